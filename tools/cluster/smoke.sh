#!/usr/bin/env bash
# Checks the cluster of up.sh end to end: a Deployment of the hello image
# (built and imported by up.sh) becomes Ready, its Service's ClusterIP answers
# from the node through kube-proxy, and cluster DNS resolves Service names
# from inside a pod. Leaves nothing behind (the smoke namespace is deleted).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
export KUBECONFIG="$KUBECONFIG_OUT"
export PATH="$("$here/build.sh" 2>/dev/null):$PATH"
trap 'kubectl delete namespace smoke --wait=false >/dev/null 2>&1 || true' EXIT

s=$SECONDS
kubectl apply -f "$here/manifests/hello.yaml"
kubectl -n smoke rollout status deployment/hello --timeout=120s
echo "smoke: hello Ready after $((SECONDS - s))s"
kubectl -n smoke get pods -o wide
ip=$(kubectl -n smoke get service hello -o jsonpath='{.spec.clusterIP}')
echo "smoke: curl http://$ip/ (the Service's ClusterIP, from the node)"
for _ in 1 2 3 4; do curl -fsS -m 5 "http://$ip/"; done
dns() { # name: resolved from inside a hello pod, through the ClusterIP
  echo "smoke: in-pod lookup of $1"
  curl -fsS -m 10 "http://$ip/resolve/$1"
}
dns hello.smoke.svc.cluster.local
dns kubernetes.default.svc
dns kube-dns.kube-system.svc
echo "smoke: ok"
