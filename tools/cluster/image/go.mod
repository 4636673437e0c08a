// Builds the pause and test images of the one-node cluster (tools/cluster)
// as OCI image archives, without a registry or a Docker engine.
module github.com/jetstate/jetstate/tools/cluster/image

go 1.26.0

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
)
