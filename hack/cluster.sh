#!/usr/bin/env bash
# A single-node Kubernetes cluster on this machine, for tests/cluster.rs: etcd and
# kube-apiserver (from hack/envtest-assets.sh), kubelet, kube-proxy, kube-controller-manager
# and kube-scheduler (built from hack/cluster/module, cached), containerd + runc + the CNI
# bridge, and the images the pods run (hack/cluster-images.sh).
#
#   hack/cluster.sh up     start it (idempotent); prints `export KUBECONFIG=...` and the like
#   hack/cluster.sh down   stop it and undo what `up` changed (idempotent)
#   hack/cluster.sh status exit 0 when it runs
#
# Everything lives in a state directory (NODEBOOT_CLUSTER_STATE, default
# /tmp/nodeboot-cluster). What `up` changes outside it, `down` restores: the node's interface
# and address, the CNI bridge and network namespaces, iptables rules (saved before,
# restored after), mounts under the state directory, and the sysctls kubelet and kube-proxy
# set. The API server listens on the node address (a local interface, no real network), with a
# certificate naming the `kubernetes` Service IP, so pods reach it as in any cluster.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${NODEBOOT_CLUSTER_STATE:-/tmp/nodeboot-cluster}"
CACHE_ROOT="${NODEBOOT_ASSETS_CACHE:-${HOME:-/tmp}/.cache/nodeboot}"
NODE_NAME=nodeboot-node
NODE_DEV=nbnode0
NODE_IP=172.31.250.1
BRIDGE=nbcni0
SERVICE_CIDR=10.231.0.0/16
KUBERNETES_SERVICE_IP=10.231.0.1
POD_CIDR=10.232.0.0/24
# Set by kubelet or kube-proxy at start; `up` records them and `down` puts them back.
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
  net.netfilter.nf_conntrack_max)
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack podman debootstrap)

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

pid_alive() { [[ -f "$STATE/pids/$1" ]] && kill -0 "$(cat "$STATE/pids/$1")" 2>/dev/null; }

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" == "install ok installed" ]] ||
      missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# kubelet, kube-proxy, kube-controller-manager, kube-scheduler at the API server's version.
kube_binaries() {
  local module="$HACK_DIR/cluster/module" version dir stamp minor ldflags pkg
  version="$(cd "$module" && GOWORK=off go list -m -f '{{.Version}}' k8s.io/kubernetes)"
  minor="${version#v1.}"
  minor="${minor%%.*}"
  # The version the binaries report (the node's kubeletVersion), as hack/envtest-assets.sh.
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
  done
  dir="$CACHE_ROOT/cluster-$version"
  stamp="$( { cat "$module/go.mod" "$module/go.sum"; echo "$ldflags"; } | sha256sum | cut -d' ' -f1)"
  if [[ "$(cat "$dir/.stamp" 2>/dev/null)" != "$stamp" ]]; then
    log "building kubelet, kube-proxy, kube-controller-manager, kube-scheduler $version into $dir"
    mkdir -p "$dir"
    (cd "$module" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir/" \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
      k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler) >&2
    echo "$stamp" >"$dir/.stamp"
  fi
  echo "$dir"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A CA and the certificates of every component, with openssl.
certificates() {
  local pki="$STATE/pki"
  [[ -f "$pki/done" ]] && return
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=nodeboot-test-cluster-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  # name, subject, extensions
  issue() {
    local ext="$pki/$1.ext"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' "$3" >"$ext"
    [[ -n "${4:-}" ]] && echo "subjectAltName=$4" >>"$ext"
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 30 -extfile "$ext" -out "$pki/$1.crt" 2>/dev/null
  }
  issue apiserver "/CN=kube-apiserver" serverAuth \
    "IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  issue admin "/O=system:masters/CN=nodeboot-test-admin" clientAuth
  issue kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  issue kubelet-serving "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
  issue controller-manager "/CN=system:kube-controller-manager" clientAuth
  issue scheduler "/CN=system:kube-scheduler" clientAuth
  issue proxy "/CN=system:kube-proxy" clientAuth
  touch "$pki/done"
}

kubeconfig() { # name user
  cat >"$STATE/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: nodeboot-test
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$STATE/pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$STATE/pki/$2.crt", client-key: "$STATE/pki/$2.key"}
contexts:
- name: nodeboot-test
  context: {cluster: nodeboot-test, user: $2}
current-context: nodeboot-test
EOF
}

start() { # name command...
  local name="$1"; shift
  pid_alive "$name" && return
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/pids/$name"
}

wait_for() { # what seconds command...
  local what="$1" limit="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not happen within ${limit}s (logs: $STATE/logs)"
    sleep 1
  done
}

record_host_state() {
  [[ -f "$STATE/host/recorded" ]] && return
  mkdir -p "$STATE/host"
  local s
  for s in "${SYSCTLS[@]}"; do
    sysctl -n "$s" >"$STATE/host/sysctl.$s" 2>/dev/null || rm -f "$STATE/host/sysctl.$s"
  done
  iptables-save >"$STATE/host/iptables"
  ip6tables-save >"$STATE/host/ip6tables"
  ip netns list 2>/dev/null | awk '{print $1}' | sort >"$STATE/host/netns"
  touch "$STATE/host/recorded"
}

node_network() {
  # A bridge without ports stands in for a dummy interface, whose kernel module this kind of
  # machine may lack (and cannot load).
  ip link show "$NODE_DEV" >/dev/null 2>&1 || ip link add "$NODE_DEV" type bridge
  ip addr show dev "$NODE_DEV" | grep -q "$NODE_IP/" || ip addr add "$NODE_IP/32" dev "$NODE_DEV"
  ip link set "$NODE_DEV" up
  # Traffic between the bridge and the node address is routed by this host.
  sysctl -qw net.ipv4.ip_forward=1
  mkdir -p "$STATE/cni"
  cat >"$STATE/cni/10-nodeboot.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "nodeboot-test",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$STATE/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

containerd_up() {
  mkdir -p "$STATE/containerd"
  cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$STATE/containerd.sock"
[ttrpc]
  address = "$STATE/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/nodeboot-pause:1"
  # kubelet asks for negative oom_score_adj values, which need CAP_SYS_RESOURCE: this kind of
  # machine lacks it, and runc's child dies. Clamped to containerd's own value instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
EOF
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for "containerd" 30 ctr --address "$STATE/containerd.sock" version
}

control_plane_up() {
  local assets="$1" kbin="$2" etcd_port peer_port
  if ! pid_alive etcd; then
    etcd_port="$(free_port)"; peer_port="$(free_port)"
    echo "$etcd_port" >"$STATE/etcd.port"
    start etcd "$assets/etcd" --data-dir "$STATE/etcd" --unsafe-no-fsync \
      --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
      --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
      --initial-cluster "default=http://127.0.0.1:$peer_port"
  fi
  etcd_port="$(cat "$STATE/etcd.port")"
  local pki="$STATE/pki"
  start kube-apiserver "$assets/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port 6443 \
    --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC \
    --enable-admission-plugins ServiceAccount,NodeRestriction \
    --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" \
    --kubelet-client-certificate "$pki/apiserver-kubelet.crt" --kubelet-client-key "$pki/apiserver-kubelet.key" \
    --kubelet-preferred-address-types InternalIP --kubelet-certificate-authority "$pki/ca.crt"
  wait_for "the API server" 60 "$assets/kubectl" --kubeconfig "$STATE/admin.kubeconfig" get --raw /readyz
  start kube-controller-manager "$kbin/kube-controller-manager" --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$(free_port)"
  start kube-scheduler "$kbin/kube-scheduler" --kubeconfig "$STATE/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$(free_port)"
}

node_up() {
  local kbin="$1"
  cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzPort: 0
tlsCertFile: $STATE/pki/kubelet-serving.crt
tlsPrivateKeyFile: $STATE/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$STATE/containerd.sock
podCIDR: $POD_CIDR
resolvConf: /etc/resolv.conf
podLogsDir: $STATE/pod-logs
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
EOF
  start kubelet "$kbin/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --root-dir "$STATE/kubelet" --fail-swap-on=false
  # Written once: kube-proxy exits when its configuration file changes.
  [[ -f "$STATE/kube-proxy.yaml" ]] || cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
clientConnection: {kubeconfig: $STATE/proxy.kubeconfig}
conntrack: {maxPerCore: 0}
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
EOF
  start kube-proxy "$kbin/kube-proxy" --config "$STATE/kube-proxy.yaml"
}

up() {
  [[ $(id -u) -eq 0 ]] || die "needs root (containerd, kubelet, iptables)"
  if status; then
    log "up: already running"
    print_env "$("$HACK_DIR/envtest-assets.sh" | tail -1)"
    return
  fi
  install_packages
  local assets kbin
  assets="$("$HACK_DIR/envtest-assets.sh" | tail -1)"
  kbin="$(kube_binaries)"
  mkdir -p "$STATE"/{pids,logs}
  record_host_state
  certificates
  local c
  for c in admin kubelet controller-manager scheduler proxy; do kubeconfig "$c" "$c"; done
  node_network
  containerd_up
  "$HACK_DIR/cluster-images.sh" base "$STATE/containerd.sock" >&2
  control_plane_up "$assets" "$kbin"
  node_up "$kbin"
  local kubectl=("$assets/kubectl" --kubeconfig "$STATE/admin.kubeconfig")
  wait_for "kube-proxy's rules" 60 iptables -t nat -C OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
  wait_for "node $NODE_NAME Ready" 120 "${kubectl[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  wait_for "the default ServiceAccount" 60 "${kubectl[@]}" get serviceaccount default -n default
  log "up: node $NODE_NAME Ready, API server https://$NODE_IP:6443"
  print_env "$assets"
}

print_env() {
  echo "export KUBECONFIG='$STATE/admin.kubeconfig'"
  echo "export NODEBOOT_CLUSTER_CONTAINERD='$STATE/containerd.sock'"
  echo "export NODEBOOT_CLUSTER_KUBECTL='$1/kubectl'"
}

stop_process() {
  local name="$1" pid
  [[ -f "$STATE/pids/$name" ]] || return 0
  pid="$(cat "$STATE/pids/$name")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/pids/$name"
}

down() {
  [[ -d "$STATE" ]] || { log "down: nothing to do"; return; }
  stop_process kubelet
  # The pods' containers: their shims outlive containerd, so they are stopped by name.
  if [[ -S "$STATE/containerd.sock" ]] && pid_alive containerd; then
    local ctr=(ctr --address "$STATE/containerd.sock" -n k8s.io) t
    for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
    sleep 1
    for t in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; done
  fi
  local p
  for p in kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do stop_process "$p"; done
  # Shims left behind are ours only if they name our containerd's socket.
  local proc
  for proc in /proc/[0-9]*; do
    tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | grep -q -- "-address $STATE/containerd.sock" &&
      kill -KILL "${proc#/proc/}" 2>/dev/null || true
  done
  # Mounts under the state directory (kubelet volumes, containerd snapshots, sandbox netns).
  { grep -o " $STATE/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  # Network namespaces the CNI made, the bridge, the node interface.
  if [[ -f "$STATE/host/netns" ]]; then
    comm -13 "$STATE/host/netns" <(ip netns list 2>/dev/null | awk '{print $1}' | sort) |
      { grep '^cni-' || true; } | while read -r n; do ip netns delete "$n" 2>/dev/null || true; done
  fi
  ip link delete "$BRIDGE" 2>/dev/null || true
  ip link delete "$NODE_DEV" 2>/dev/null || true
  if [[ -f "$STATE/host/recorded" ]]; then
    iptables-restore <"$STATE/host/iptables"
    ip6tables-restore <"$STATE/host/ip6tables"
    local s
    for s in "${SYSCTLS[@]}"; do
      [[ -f "$STATE/host/sysctl.$s" ]] && sysctl -qw "$s=$(cat "$STATE/host/sysctl.$s")" 2>/dev/null || true
    done
  fi
  rm -rf "$STATE"
  log "down: stopped and restored"
}

status() {
  local p
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    pid_alive "$p" || return 1
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
