#!/usr/bin/env bash
# Stops the one-node cluster of up.sh and removes everything it made: pods
# and their containers, the processes it started (by their pid files),
# containerd's shims, mounts under its state and run directories, the pod
# network namespaces, the CNI bridge, the KUBE-* and CNI-* iptables and ip6tables chains,
# the kubelet's cgroups, the sysctls it changed, and its state. Safe to run
# twice, or after a failed up.sh.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
[ "$(id -u)" = 0 ] || { echo "cluster: down.sh must run as root" >&2; exit 1; }

bin="${JETSTATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jetstate}/cluster/k8s-$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/../envtest/kube-apiserver/go.mod")"
export PATH="$bin:$PATH"
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

stop() { # name: TERM, then KILL after 10 s, by the pid file up.sh wrote
  local f="$RUN/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null && echo "cluster: killed $1 (pid $pid)" >&2
  fi
  echo "cluster: stopped $1" >&2
  rm -f "$f"
}

# 1. Pods go while the kubelet still runs, so their sandboxes are torn down
#    through the CRI (CNI DEL releases addresses and iptables rules).
if [ -f "$RUN/kubelet.pid" ] && [ -f "$KUBECONFIG_OUT" ] && kill -0 "$(cat "$RUN/kubelet.pid")" 2>/dev/null; then
  export KUBECONFIG="$KUBECONFIG_OUT"
  timeout 30 kubectl delete deployments,statefulsets,daemonsets,replicasets,jobs --all -A --wait=false >/dev/null 2>&1
  timeout 60 kubectl delete pods --all -A --grace-period=2 --timeout=50s >/dev/null 2>&1
fi

# 2. The processes, the node side first.
for p in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$p"; done

# 3. Whatever containers remain, then containerd and its shims (found by our socket).
if [ -S "$CONTAINERD_SOCK" ]; then
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1; done
  for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null); do
  kill -KILL "$pid" 2>/dev/null && echo "cluster: killed shim pid $pid" >&2
done

# 4. Mounts under the state and run directories, deepest first.
for dir in "$STATE" "$RUN"; do
  for m in $(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "cluster: cannot unmount $m" >&2
  done
done

# 5. Pod network namespaces made since up.sh, the bridge, iptables chains.
if [ -f "$RUN/netns.before" ]; then
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do
    grep -qx "$ns" "$RUN/netns.before" || ip netns delete "$ns" 2>/dev/null
  done
fi
if [ -f "$RUN/netns-mount.ours" ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ] && mountpoint -q /run/netns; then
  umount /run/netns
fi
if [ -f "$RUN/run-containerd.ours" ]; then
  rmdir /run/containerd/s /run/containerd 2>/dev/null
fi
[ -f "$RUN/var-lib-kubelet.ours" ] && rm -rf /var/lib/kubelet
[ -f "$RUN/var-lib-cni.ours" ] && rm -rf /var/lib/cni
ip link show "$CNI_BRIDGE" >/dev/null 2>&1 && ip link delete "$CNI_BRIDGE"
if [ -x "$bin/kube-proxy" ]; then "$bin/kube-proxy" --cleanup >/dev/null 2>&1; fi
# Rules that jump to, and chains named, KUBE-* or CNI-* (the kubelet's,
# kube-proxy's and the CNI plugins'; nothing else on the machine uses them).
for ipt in iptables ip6tables; do
  for table in filter nat mangle; do
    $ipt -t "$table" -S 2>/dev/null | awk '$1 == "-A" && / -j (KUBE|CNI)-/' | while read -r rule; do
      eval "$ipt -t $table ${rule/-A/-D}" 2>/dev/null
    done
    for chain in $($ipt -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
      $ipt -t "$table" -F "$chain" 2>/dev/null
    done
    for chain in $($ipt -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
      $ipt -t "$table" -X "$chain" 2>/dev/null
    done
  done
done

# 6. The kubelet's cgroups (kubepods, and the QoS classes in it), deepest first.
for h in /sys/fs/cgroup/*/; do
  [ -d "$h/kubepods" ] || continue
  find "$h/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
  [ -d "$h/kubepods" ] && echo "cluster: cannot remove $h/kubepods" >&2
done

# 7. The kubelet's links to container logs (it keeps the logs in $STATE/pod-logs).
for l in /var/log/containers/*.log; do
  [ -L "$l" ] || continue
  case "$(readlink "$l")" in "$STATE"/*) rm -f "$l" ;; esac
done

# 8. Sysctls back as they were, then the state.
if [ -f "$RUN/sysctl.saved" ]; then
  while IFS= read -r kv; do sysctl -q -w "$kv"; done <"$RUN/sysctl.saved"
fi
rm -rf "$STATE" "$RUN" "$KUBECONFIG_OUT"
echo "cluster: down" >&2
