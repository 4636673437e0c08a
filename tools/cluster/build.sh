#!/usr/bin/env bash
# Prints a directory holding the binaries of a one-node cluster, building the
# missing ones from the Go module proxy the first time:
#   kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
#     from k8s.io/kubernetes, the same module and version pin as envtest's
#     kube-apiserver (tools/envtest/kube-apiserver/go.mod), built in one
#     `go build` so they share compiled packages;
#   kube-apiserver and etcd are linked from tools/envtest/assets.sh;
#   coredns from its own module (tools/cluster/coredns);
#   pause and the image builder from tools/cluster/image.
# The binaries are cached outside the checkout, keyed by version:
#   ${JETSTATE_CACHE:-~/.cache/jetstate}/cluster/k8s-<version>/
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
k8smod="$root/tools/envtest/kube-apiserver"

K8S_VERSION=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$k8smod/go.mod")
COREDNS_VERSION=$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3; exit}' "$here/coredns/go.mod" 2>/dev/null || true)
cache="${JETSTATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jetstate}/cluster"
dir="$cache/k8s-$K8S_VERSION"
mkdir -p "$dir"

exec 9>"$dir/.lock"
flock 9

t() { local s=$SECONDS; "$@"; echo "cluster: $1 ${2:-} took $((SECONDS - s))s" >&2; }

build_k8s() {
  local cmds=() c
  for c in kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    [ -x "$dir/$c" ] || cmds+=("k8s.io/kubernetes/cmd/$c")
  done
  [ ${#cmds[@]} -gt 0 ] || return 0
  echo "cluster: building ${cmds[*]##*/} $K8S_VERSION into $dir (4-5 minutes on 2 cores after kube-apiserver, once)" >&2
  local major=${K8S_VERSION#v} minor
  minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local tmp="$dir/.build"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # One go build with -o <dir>/ builds every command in one action graph.
  (cd "$k8smod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${cmds[@]}")
  mv "$tmp"/* "$dir/"
  rmdir "$tmp"
}

build_coredns() {
  # Keyed by its own version too: the directory is keyed by Kubernetes's.
  local out="$dir/coredns-$COREDNS_VERSION"
  if [ ! -x "$out" ]; then
    echo "cluster: building coredns $COREDNS_VERSION into $dir (1-2 minutes, once)" >&2
    (cd "$here/coredns" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp" .)
    mv "$out.tmp" "$out"
  fi
  ln -sfn "coredns-$COREDNS_VERSION" "$dir/coredns"
}

build_image_tools() {
  # Small and quick: rebuilt every time so that changes to them take effect.
  (cd "$here/image" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/ociarchive" ./cmd/ociarchive \
    && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/pause" ./cmd/pause \
    && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/hello" ./cmd/hello)
}

envtest="$("$root/tools/envtest/assets.sh")"
ln -sf "$envtest/kube-apiserver" "$dir/kube-apiserver"
ln -sf "$envtest/etcd" "$dir/etcd"
t build_k8s
if [ -f "$here/coredns/go.mod" ]; then t build_coredns; fi
if [ -d "$here/image" ]; then t build_image_tools; fi
echo "$dir"
