# Sourced by up.sh, down.sh and smoke.sh: where the one-node cluster keeps
# its state and what it is called. Override with the environment.
cache_root="${JETSTATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jetstate}"
# Everything the cluster writes, removed by down.sh: certificates, etcd,
# containerd's content and snapshots, the kubelet's root dir, logs.
STATE="${JETSTATE_CLUSTER_STATE:-$cache_root/cluster/state}"
# Sockets, pid files and containerd's runtime state (tmpfs).
RUN=/run/jetstate-cluster
# The admin kubeconfig up.sh writes.
KUBECONFIG_OUT="${JETSTATE_KUBECONFIG:-$cache_root/cluster/kubeconfig}"
NODE_NAME=jetstate
CLUSTER_CIDR=10.244.0.0/16
POD_CIDR=10.244.0.0/24
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
CNI_BRIDGE=jscni0
API_PORT=6443
ETCD_PORT=23790
CONTAINERD_SOCK="$RUN/containerd/containerd.sock"
PAUSE_IMAGE=jetstate.local/pause:v1
# hostPath PersistentVolumes up.sh makes (10Gi each, class local-path).
VOLUMES="${JETSTATE_CLUSTER_VOLUMES:-6}"
