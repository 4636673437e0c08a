#!/usr/bin/env bash
# Deploys the Kubernetes example on the one-node cluster exactly as
# examples/kubernetes/README.md says, with the images of images.sh instead of
# a registry, waits for everything to be Ready (printing how long each wait
# took), then adds an item to a cart through the shoppingcart Service's
# ClusterIP and waits for it in the read model. Idempotent: run it again to
# re-apply and re-check. Starts the cluster (up.sh) if it is not up.
#   DEPLOY_SKIP_IMAGES=1  do not rebuild and re-import the images
#   DEPLOY_TIMEOUT=300    seconds for each wait
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/env.sh"
timeout=${DEPLOY_TIMEOUT:-300}
ns=jetstate-demo
total=$SECONDS

[ -f "$RUN/up" ] || "$here/up.sh" >/dev/null
export KUBECONFIG="$KUBECONFIG_OUT"
export PATH="$("$here/build.sh" 2>/dev/null):$PATH"
[ "${DEPLOY_SKIP_IMAGES:-}" = 1 ] || "$here/images.sh"

# step what describe cmd...: runs cmd (a wait bounded by $timeout), prints
# how long it took, or fails pointing at what to describe.
step() {
  local what=$1 describe=$2 s=$SECONDS; shift 2
  if ! "$@" >/dev/null; then
    echo "deploy: FAILED: $what after $((SECONDS - s))s; see: kubectl describe $describe" >&2
    kubectl get $describe -o wide >&2 || true
    exit 1
  fi
  echo "deploy: $what: $((SECONDS - s))s" >&2
}
# until_true what describe cmd...: polls cmd every 2 s up to $timeout.
until_true() {
  local what=$1 describe=$2; shift 2
  poll() { local end=$((SECONDS + timeout)); until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 2; done; }
  step "$what" "$describe" poll "$@"
}
ready() { # kind name: the jetstate Ready condition
  kubectl wait -n "$ns" --for=condition=Ready "$1/$2" --timeout="${timeout}s"
}

cd "$root"
# 2. The operator (README "2. The operator"), with the local images. The
# operator's image and JETSTATE_SIDECAR_IMAGE are applied already set to
# what `kubectl set` makes them below: a second server-side apply of crds/
# would otherwise conflict with the kubectl-set field manager (or, forced,
# roll the operator back to ghcr.io/... and forward again). On the first run
# the two `kubectl set` are then no-ops; they stay as the README's steps.
kubectl kustomize crds/ |
  sed -e 's|ghcr.io/jetstate/jetstate-operator:latest|jetstate-operator:dev|' -e 's|ghcr.io/jetstate/jetstate:latest|jetstate:dev|' |
  kubectl apply --server-side -f - >&2
step "CRDs established" crd kubectl wait --for=condition=Established --timeout="${timeout}s" \
  crd/statefulstores.jetstate.io crd/statefulservices.jetstate.io crd/projections.jetstate.io
kubectl -n jetstate-system set image deploy/jetstate-operator operator=jetstate-operator:dev >&2
kubectl -n jetstate-system set env deploy/jetstate-operator JETSTATE_SIDECAR_IMAGE=jetstate:dev >&2
step "operator rolled out" "-n jetstate-system deploy/jetstate-operator" \
  kubectl -n jetstate-system rollout status deploy/jetstate-operator --timeout="${timeout}s"

# 3. The example.
kubectl apply -k examples/kubernetes >&2
step "NATS 3 pods Ready (JetStream current)" "-n $ns statefulset/nats" \
  kubectl -n "$ns" rollout status statefulset/nats --timeout="${timeout}s"
step "StatefulStore nats Ready" "-n $ns statefulstore/nats" ready statefulstore nats
step "StatefulService shoppingcart Ready" "-n $ns statefulservice/shoppingcart" ready statefulservice shoppingcart
step "Deployment shoppingcart rolled out" "-n $ns deploy/shoppingcart" \
  kubectl -n "$ns" rollout status deploy/shoppingcart --timeout="${timeout}s"
step "read model rolled out" "-n $ns deploy/readmodel" \
  kubectl -n "$ns" rollout status deploy/readmodel --timeout="${timeout}s"
step "Projection cart-view Ready" "-n $ns projection/cart-view" ready projection cart-view
kubectl -n "$ns" get statefulstores,statefulservices,projections,pods -o wide >&2

# The cart through the Service's ClusterIP, then the read model's view.
cart=ClusterIP
svc=$(kubectl -n "$ns" get service shoppingcart -o jsonpath='{.spec.clusterIP}')
rm=$(kubectl -n "$ns" get service readmodel -o jsonpath='{.spec.clusterIP}')
id="deploy-$(date +%s)"
add() {
  curl -fsS -m 10 -XPOST "http://$svc:9000/cart/$id/items/add" -H 'Content-Type: application/json' \
    -d '{"productId":"apple","name":"Apple","quantity":2}'
}
until_true "cart $id: item added through $svc:9000" "-n $ns statefulservice/shoppingcart" add
echo "deploy: cart: $(curl -fsS -m 10 "http://$svc:9000/carts/$id")" >&2
in_view() { curl -fsS -m 5 "http://$rm/carts/$id" | grep -q '"productId":"apple"'; }
until_true "cart $id in the read model ($rm)" "-n $ns projection/cart-view" in_view
echo "deploy: read model: $(curl -fsS -m 5 "http://$rm/carts/$id")" >&2
echo "deploy: ok in $((SECONDS - total))s" >&2
