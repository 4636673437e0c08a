#!/usr/bin/env bash
# Prints a directory holding kube-apiserver and etcd for envtest
# (KUBEBUILDER_ASSETS), building them from the Go module proxy the first time.
# setup-envtest's downloads cannot reach the internet here. The binaries are
# cached outside the checkout, keyed by version, so a fresh clone (CI) reuses
# them: kube-apiserver takes 10-20 minutes to build on 2 cores, etcd ~2.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

K8S_VERSION=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kube-apiserver/go.mod")
ETCD_VERSION=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")
cache="${JETSTATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jetstate}/envtest"
dir="$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$dir"

# One builder at a time (parallel make or test runs wait for the first).
exec 9>"$dir/.lock"
flock 9

if [ ! -x "$dir/etcd" ]; then
  echo "envtest: building etcd $ETCD_VERSION into $dir (about 2 minutes, once)" >&2
  (cd "$here/etcd" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/etcd.tmp" .)
  mv "$dir/etcd.tmp" "$dir/etcd"
fi

if [ ! -x "$dir/kube-apiserver" ]; then
  echo "envtest: building kube-apiserver $K8S_VERSION into $dir (10-20 minutes on 2 cores, once)" >&2
  major=${K8S_VERSION#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$here/kube-apiserver" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" \
    -o "$dir/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
fi

echo "$dir"
