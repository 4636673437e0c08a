#!/usr/bin/env bash
# Starts a one-node Kubernetes cluster from upstream parts on this machine, as
# root, without Docker or a registry: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd (Debian), the kubelet,
# kube-proxy (iptables), a bridge CNI network and CoreDNS. Writes an admin
# kubeconfig and prints its path. down.sh undoes all of it. See README.md.
set -Eeuo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"

[ "$(id -u)" = 0 ] || { echo "cluster: up.sh must run as root" >&2; exit 1; }
if [ -f "$RUN/up" ]; then
  echo "cluster: already up (down.sh first); kubeconfig: $KUBECONFIG_OUT" >&2
  echo "$KUBECONFIG_OUT"
  exit 0
fi

# Debian's packages: containerd 1.6 (CRI v1), runc, the CNI plugins, iptables.
need=()
for p in containerd runc containernetworking-plugins iptables conntrack; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "cluster: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

trap 'echo "cluster: up.sh failed; logs in $STATE/logs; tools/cluster/down.sh cleans up" >&2' ERR
bin="$("$here/build.sh")"
export PATH="$bin:$PATH"
mkdir -p "$STATE"/{pki,logs,etcd,containerd,kubelet,cni/net.d,cni/ipam,images} "$RUN"
touch "$RUN/up"
node_ip=$(ip -4 route get 1.1.1.1 | awk '{for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1)}')

# --- processes: each started in its own session, pid in $RUN, log in $STATE/logs
start() {
  local name=$1; shift
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN/$name.pid"
  echo "cluster: started $name (pid $!, log $STATE/logs/$name.log)" >&2
}
wait_for() {
  local what=$1 tries=$2; shift 2
  for ((i = 0; i < tries; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "cluster: $what not ready after ${tries}s; logs in $STATE/logs" >&2
  return 1
}

# --- sysctls the node needs; the old values go back in down.sh
: >"$RUN/sysctl.saved"
for kv in net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1; do
  k=${kv%%=*}
  echo "$k=$(sysctl -n "$k")" >>"$RUN/sysctl.saved"
  sysctl -q -w "$kv"
done
# netns present before us: down.sh removes only the ones created after. It
# also undoes the /run/netns bind mount, the shims' /run/containerd/s socket
# directory and the directories below if they were not there before.
ip netns list 2>/dev/null | awk '{print $1}' >"$RUN/netns.before" || true
mountpoint -q /run/netns || touch "$RUN/netns-mount.ours"
[ -e /run/containerd ] || touch "$RUN/run-containerd.ours"
# Paths the kubelet (device plugins) and libcni (result cache) hard-code.
[ -e /var/lib/kubelet ] || touch "$RUN/var-lib-kubelet.ours"
[ -e /var/lib/cni ] || touch "$RUN/var-lib-cni.ours"

# --- PKI: a CA, the API server's serving certificate, client certificates
pki="$STATE/pki"
if [ ! -f "$pki/ca.crt" ]; then
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=jetstate-cluster-ca" 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    cert() { # name CN O [SANs]
      local subj="/CN=$2"; [ -n "$3" ] && subj="/O=$3$subj"
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$subj" 2>/dev/null
      local ext="extendedKeyUsage=clientAuth"
      [ -n "${4:-}" ] && ext="extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$4"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 \
        -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n%s\n' "$ext") 2>/dev/null
      rm -f "$1.csr"
    }
    cert apiserver kube-apiserver "" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$API_SERVICE_IP,IP:$node_ip"
    cert admin kubernetes-admin system:masters
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
    cert controller-manager system:kube-controller-manager ""
    cert scheduler system:kube-scheduler ""
    cert kubelet "system:node:$NODE_NAME" system:nodes
    cert kube-proxy system:kube-proxy ""
  )
fi
kubeconfig() { # name -> $STATE/<name>.kubeconfig
  local f="$STATE/$1.kubeconfig"
  KUBECONFIG="$f" kubectl config set-cluster jetstate --server="https://127.0.0.1:$API_PORT" \
    --certificate-authority="$pki/ca.crt" --embed-certs >/dev/null
  KUBECONFIG="$f" kubectl config set-credentials "$1" --client-certificate="$pki/$1.crt" \
    --client-key="$pki/$1.key" --embed-certs >/dev/null
  KUBECONFIG="$f" kubectl config set-context jetstate --cluster=jetstate --user="$1" >/dev/null
  KUBECONFIG="$f" kubectl config use-context jetstate >/dev/null
}
for n in admin controller-manager scheduler kubelet kube-proxy; do kubeconfig "$n"; done
mkdir -p "$(dirname "$KUBECONFIG_OUT")"
cp "$STATE/admin.kubeconfig" "$KUBECONFIG_OUT"
export KUBECONFIG="$KUBECONFIG_OUT"

# --- control plane
start etcd etcd --name jetstate --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "jetstate=http://127.0.0.1:$((ETCD_PORT + 1))" --unsafe-no-fsync
wait_for etcd 30 curl -fs "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver kube-apiserver --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 0.0.0.0 --secure-port "$API_PORT" --advertise-address "$node_ip" \
  --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged \
  --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --kubelet-preferred-address-types InternalIP
wait_for kube-apiserver 90 kubectl get --raw /readyz

start kube-controller-manager kube-controller-manager --kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --allocate-node-cidrs --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
  --service-cluster-ip-range "$SERVICE_CIDR"
start kube-scheduler kube-scheduler --kubeconfig "$STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
  --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false

# --- containerd (Debian's 1.6), its own config, root and state
cat >"$STATE/containerd/config.toml" <<TOML
version = 2
root = "$STATE/containerd/root"
state = "$RUN/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = "$RUN/containerd/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_unprivileged_ports = true
  # This machine's root lacks CAP_SYS_RESOURCE, so nothing here may lower an
  # oom_score_adj (the pause container's default is -998): clamp to our own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
TOML
mkdir -p "$RUN/containerd"
start containerd containerd --config "$STATE/containerd/config.toml"
wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version

# --- images: built from Go into archives, imported without a registry
(
  cd "$STATE/images"
  ociarchive -bin "$bin/pause" -tag "$PAUSE_IMAGE" -user 65535:65535 -o pause.tar
  ociarchive -bin "$bin/hello" -tag jetstate.local/hello:v1 -o hello.tar
  [ ! -x "$bin/coredns" ] || ociarchive -bin "$bin/coredns" -tag jetstate.local/coredns:v1.15.0 \
    -args "-conf /etc/coredns/Corefile" -o coredns.tar
  for a in *.tar; do ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$a" >&2; done
)

# --- CNI: one bridge, host-local addresses from the node's pod CIDR
cat >"$STATE/cni/net.d/10-jetstate.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "jetstate",
  "plugins": [
    {
      "type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON

# --- kubelet: cgroupfs on this host's cgroup v1 hierarchies (see README.md)
cat >"$STATE/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
# Root here lacks CAP_SYS_RESOURCE: the default -999 cannot be set.
oomScoreAdj: 0
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: ["$DNS_SERVICE_IP"]
resolvConf: /etc/resolv.conf
failSwapOn: false
podCIDR: "$POD_CIDR"
address: "$node_ip"
healthzBindAddress: 127.0.0.1
serializeImagePulls: false
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
imageGCHighThresholdPercent: 100
podLogsDir: "$STATE/pod-logs"
YAML
start kubelet kubelet --config "$STATE/kubelet/config.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
  --root-dir "$STATE/kubelet/root" --hostname-override "$NODE_NAME" --node-ip "$node_ip" \
  --cert-dir "$STATE/kubelet/pki"
wait_for "node $NODE_NAME" 90 kubectl get node "$NODE_NAME"

# --- kube-proxy, iptables mode
cat >"$STATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: "$STATE/kube-proxy.kubeconfig"}
hostnameOverride: $NODE_NAME
clusterCIDR: $CLUSTER_CIDR
bindAddress: 0.0.0.0
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0}
YAML
start kube-proxy kube-proxy --config "$STATE/kube-proxy.yaml"

wait_for "node $NODE_NAME Ready" 120 kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s

# --- cluster DNS
if [ -x "$bin/coredns" ]; then
  sed "s/@DNS_SERVICE_IP@/$DNS_SERVICE_IP/" "$here/manifests/coredns.yaml" | kubectl apply -f - >&2
  kubectl -n kube-system rollout status deployment/coredns --timeout=120s >&2
fi

# --- storage: a default StorageClass and hostPath volumes for PVCs
storage() {
  local n=$1 dir="$STATE/volumes"
  sed -e "s|@COUNT@|$n|" -e "s|@DIR@|$dir|" "$here/manifests/storage.yaml"
  for ((i = 0; i < n; i++)); do
    mkdir -p "$dir/pv$i" && chmod 0777 "$dir/pv$i"
    cat <<YAML
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-pv$i
spec:
  storageClassName: local-path
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: "$dir/pv$i", type: Directory}
YAML
  done
}
storage "$VOLUMES" | kubectl apply -f - >&2

echo "cluster: up; kubectl --kubeconfig $KUBECONFIG_OUT get nodes" >&2
echo "$KUBECONFIG_OUT"
