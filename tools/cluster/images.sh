#!/usr/bin/env bash
# Builds the Kubernetes example's images without Docker or a registry and
# imports them into the running cluster's containerd (up.sh):
#   jetstate:dev, jetstate-operator:dev, jetstate-shoppingcart:dev,
#   jetstate-readmodel:dev
#     from examples/kubernetes/Dockerfile: the packages of its build stage's
#     `go build -o /out/<name> <package>` lines, built the same way
#     (CGO_ENABLED=0, -trimpath, -ldflags "-s -w"), and each final stage's
#     file, USER and ENTRYPOINT, read by ociarchive -dockerfile;
#   nats:<major.minor>-alpine, as examples/kubernetes/nats.yaml names it,
#     from the module github.com/nats-io/nats-server/v2 at the version go.mod
#     pins (images.sh fails if nats.yaml names another minor version): the
#     static nats-server at /nats-server, run as 65532:65532. The official
#     image's entrypoint passes arguments starting with '-' to nats-server,
#     so the manifest's `args: [-c, ...]` mean the same to both.
# The binaries and archives go to ${JETSTATE_CACHE:-~/.cache/jetstate}/cluster/images/.
# Pods find the images by these names with the default pull policy
# (IfNotPresent for a tag other than latest): nothing is pulled.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/env.sh"
[ -f "$RUN/up" ] || { echo "images: the cluster is not up (make cluster-up)" >&2; exit 1; }
bin="$("$here/build.sh")"
dockerfile="$root/examples/kubernetes/Dockerfile"
out="$cache_root/cluster/images"
mkdir -p "$out"
s=$SECONDS

# name package, from the Dockerfile's build stage.
mapfile -t pairs < <(grep -oE -- '-o /out/[A-Za-z0-9_-]+ +\./[^ ]+' "$dockerfile" | awk '{sub("/out/", "", $2); print $2, $3}')
[ ${#pairs[@]} -gt 0 ] || { echo "images: no 'go build -o /out/<name> <package>' in $dockerfile" >&2; exit 1; }
pkgs=()
for p in "${pairs[@]}"; do pkgs+=("${p#* }"); done

nats_version=$(awk '$1 == "github.com/nats-io/nats-server/v2" {print $2; exit}' "$root/go.mod")
nats_image=$(awk '$1 == "image:" && $2 ~ /^nats:/ {print $2; exit}' "$root/examples/kubernetes/nats.yaml")
minor=${nats_version#v}; minor=${minor%.*}
case "$nats_image" in
  "nats:$minor-alpine" | "nats:${nats_version#v}-alpine") ;;
  *) echo "images: examples/kubernetes/nats.yaml runs $nats_image but go.mod pins nats-server $nats_version" >&2; exit 1 ;;
esac

echo "images: building ${pairs[*]%% *} and nats-server $nats_version into $out" >&2
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/" "${pkgs[@]}" github.com/nats-io/nats-server/v2)
echo "images: built in $((SECONDS - s))s" >&2

archives=()
for p in "${pairs[@]}"; do
  name=${p%% *}
  case $name in
    jetstate | jetstate-*) tag=$name:dev ;;
    *) tag=jetstate-$name:dev ;;
  esac
  "$bin/ociarchive" -dockerfile "$dockerfile" -target "$name" -bin "$out/$name" -tag "$tag" -o "$out/$name.tar"
  archives+=("$out/$name.tar")
done
"$bin/ociarchive" -bin "$out/nats-server" -tag "$nats_image" -o "$out/nats-server.tar"
archives+=("$out/nats-server.tar")

for a in "${archives[@]}"; do
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$a" >&2
done
ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q | grep -E '/(jetstate|jetstate-[a-z]+|nats):' >&2
echo "images: imported in $((SECONDS - s))s" >&2
