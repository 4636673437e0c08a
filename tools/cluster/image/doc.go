// Package image holds the commands that make the images of the one-node
// cluster under tools/cluster: pause (the pod sandbox), hello (a smoke-test
// HTTP server) and ociarchive, which wraps one static binary into an image
// archive that `ctr images import` takes. No registry, no Docker engine.
package image
