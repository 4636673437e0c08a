#!/usr/bin/env bash
# make e2e: the one-node cluster (started if it is not up), the example
# deployed as examples/kubernetes/README.md says (deploy.sh), then the
# end-to-end driver (e2e/, build tag e2e) under load, which prints its table
# and fails when a line falls short. The cluster stays up for a look
# afterwards (make cluster-down removes it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/env.sh"
start=$SECONDS
"$here/deploy.sh"
export KUBECONFIG="$KUBECONFIG_OUT"
bin="$("$here/build.sh" 2>/dev/null)"
export KUBECTL="$bin/kubectl"
echo "e2e: deployed in $((SECONDS - start))s; running the driver" >&2
cd "$root"
go test -tags e2e -count=1 -timeout "${E2E_TIMEOUT:-60m}" -v ./e2e/
echo "e2e: done in $((SECONDS - start))s" >&2
