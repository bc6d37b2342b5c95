#!/usr/bin/env bash
# A single-node Kubernetes of the project's own, for machines that reach package registries but no image
# registry and no download site (this project's CI): every binary is built from its Go module, every
# image is made here.
#
#   deploy/k8s/local-cluster.sh build        the binaries (cached) and the cluster's images
#   deploy/k8s/local-cluster.sh up           build, then the cluster running: node Ready, DNS answering
#   deploy/k8s/local-cluster.sh load IMAGE…  images of the project's Docker engine into the node's containerd
#   deploy/k8s/local-cluster.sh env          the exports that point kubectl and helm at it
#   deploy/k8s/local-cluster.sh down         every process stopped, pods, mounts and network rules removed
#
# - Kubernetes v1.34.4 (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
#   kubectl) built from the k8s.io/kubernetes module in a scratch module that replaces its staging
#   modules (./staging in its go.mod) by their published v0.34.4; crictl (cri-tools) and CoreDNS (only
#   the plugins the cluster uses, deploy/k8s/coredns) from their modules. Cached under
#   $PIONEER_CACHE_DIR/k8s-v1.34.4.
# - Debian's etcd-server, containerd 1.6 (its CRI plugin on its own socket, root and state dirs; cgroupfs
#   driver: this machine has cgroup v1), runc, containernetworking-plugins (bridge, host-local, portmap,
#   firewall, loopback), nftables for kube-proxy's nftables mode.
# - Images: the pod sandbox (deploy/k8s/pause) and CoreDNS as static binaries in FROM-scratch images
#   built on the project's Docker engine (deploy/docker/local-docker.sh) and imported into containerd
#   (`docker save | ctr -n k8s.io images import`); pods run them with imagePullPolicy Never/IfNotPresent.
# - Network: the bridge $BRIDGE with $NODE_IP, the pods' gateway, is the node's address; the apiserver
#   and the kubelet listen there (pods reach the apiserver through it), everything else on 127.0.0.1.
#   Services: 10.96.0.0/16, DNS at 10.96.0.10.
# - Storage: a default StorageClass of local volumes in $STATE/volumes (fsGroup applies to them).
# - State under $PIONEER_K8S_DIR (default ~/.local/state/pioneer-telemetry/k8s); the kubelet writes pod
#   logs where every kubelet does (/var/log/pods, linked from /var/log/containers): that is what the
#   collector reads.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/deploy/k8s
STATE=${PIONEER_K8S_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/pioneer-telemetry/k8s}
CACHE=${PIONEER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pioneer-telemetry}
K8S_VERSION=v1.34.4
STAGING_VERSION=v0.34.4
CRICTL_VERSION=v1.34.0
COREDNS_VERSION=v1.12.1  # the CoreDNS kubeadm installs with Kubernetes 1.34
BIN=$CACHE/k8s-$K8S_VERSION
NODE=pioneer-node
BRIDGE=pt-cni0
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
NODE_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
ETCD_PORT=12379
API=https://$NODE_IP:6443
PAUSE_IMAGE=pioneer-telemetry/pause:local
COREDNS_IMAGE=pioneer-telemetry/coredns:$COREDNS_VERSION
VOLUMES=8  # local PersistentVolumes kept available

PKI=$STATE/pki
RUN=$STATE/run
LOGS=$STATE/logs
CONTAINERD_SOCK=$STATE/containerd/containerd.sock
export KUBECONFIG=$PKI/admin.kubeconfig
export PATH=$BIN:$PATH

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
go_cmd() { GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 "$(command -v go || echo /usr/local/go/bin/go)" "$@"; }

need_packages() {
  local missing=() package
  for package in etcd-server containerd runc containernetworking-plugins conntrack socat iptables nftables openssl; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# --- build ------------------------------------------------------------------------------------------
# Each build step's status is its last command's: they run inside `if`, where errexit does not apply.
build_kubernetes() {  # build_kubernetes WORKDIR
  local work=$1/kubernetes source
  local commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
  mkdir -p "$work"
  source=$(go_cmd mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -f $source/go.mod ]] || return 1
  {
    printf 'module pioneer-telemetry.local/kubernetes-build\n\ngo 1.24.0\n\ngodebug default=go1.24\n\n'
    printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    # k8s.io/kubernetes replaces its staging modules by ./staging/src/...: a dependent module must name
    # their published versions instead
    sed -n '/^replace (/,/^)/p' "$source/go.mod" | awk -v v="$STAGING_VERSION" '/=>/ { printf "\t%s => %s %s\n", $1, $1, v }'
    printf ')\n'
  } >"$work/go.mod"
  local packages=("${commands[@]/#/k8s.io/kubernetes/cmd/}")
  (cd "$work" && go_cmd get "${packages[@]/%/@$K8S_VERSION}" \
    && go_cmd build -trimpath -o "$BIN.part/" -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34 \
      -X k8s.io/component-base/version.gitTreeState=clean" "${packages[@]}")
}

build_crictl() {
  GOBIN=$BIN.part go_cmd install -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
}

build_static() {  # build_static WORKDIR NAME [REQUIRE@VERSION]: a static binary of deploy/k8s/NAME/main.go
  local work=$1/$2 name=$2 require=${3:-}
  mkdir -p "$work"
  cp "$HERE/$name/main.go" "$work/"
  (cd "$work" && go_cmd mod init "pioneer-telemetry.local/$name" \
    && { [[ -z $require ]] || go_cmd get "$require"; } \
    && go_cmd mod tidy && go_cmd build -trimpath -ldflags "-s -w" -o "$BIN.part/$name" .)
}

binaries() {
  [[ -e $BIN/.complete ]] && return
  local work
  work=$(mktemp -d)
  rm -rf "$BIN.part"
  mkdir -p "$BIN.part"
  log "building Kubernetes $K8S_VERSION from its Go module, crictl $CRICTL_VERSION, CoreDNS $COREDNS_VERSION" \
    "(deploy/k8s/coredns) and the pod sandbox (deploy/k8s/pause) once: ~11 min on 2 cores; output in $BIN.log"
  if ! { build_kubernetes "$work" && build_crictl && build_static "$work" pause \
      && build_static "$work" coredns "github.com/coredns/coredns@$COREDNS_VERSION"; } >"$BIN.log" 2>&1; then
    rm -rf "$work"
    tail -30 "$BIN.log" >&2
    log "the build failed (all of its output: $BIN.log)"
    return 1
  fi
  rm -rf "$work"
  touch "$BIN.part/.complete"
  rm -rf "$BIN"
  mv "$BIN.part" "$BIN"
  log "built into $BIN"
}

docker_env() {
  bash "$ROOT/deploy/docker/local-docker.sh" prepare
  eval "$(bash "$ROOT/deploy/docker/local-docker.sh" env)"
}

images() {  # the sandbox and CoreDNS images on the Docker engine: a static binary each, nothing else
  local name image context
  for name in pause coredns; do
    image=$PAUSE_IMAGE
    [[ $name == coredns ]] && image=$COREDNS_IMAGE
    docker image inspect "$image" >/dev/null 2>&1 && continue
    context=$(mktemp -d)
    cp "$BIN/$name" "$context/"
    printf 'FROM scratch\nCOPY %s /%s\nUSER 65535:65535\nENTRYPOINT ["/%s"]\n' "$name" "$name" "$name" >"$context/Dockerfile"
    docker build --quiet -t "$image" "$context" >/dev/null 2>"$context.log" || { cat "$context.log" >&2; return 1; }
    rm -f "$context.log"
    rm -rf "$context"
  done
}

ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

load() {  # load IMAGE...: from the Docker engine into the node's containerd, unless it has that image id
  local image id
  for image in "$@"; do
    id=$(docker image inspect --format '{{.Id}}' "$image")
    if [[ $(ctr_ images ls -q "name==docker.io/$(normalized "$image")" 2>/dev/null) ]] \
        && [[ $(cat "$RUN/images/$(tr '/:' '__' <<<"$image")" 2>/dev/null) == "$id" ]]; then
      continue
    fi
    log "loading $image into containerd"
    # a retry: an import racing containerd's garbage collection of the image it replaces can fail with
    # "parent snapshot ... does not exist" (seen once); the next import finds the layers again
    local attempt
    for attempt in 1 2 3; do
      docker save "$image" | ctr_ images import - >/dev/null && break
      ((attempt < 3)) || return 1
      log "import failed (attempt $attempt); again in 5 s"
      sleep 5
    done
    mkdir -p "$RUN/images"
    printf '%s\n' "$id" >"$RUN/images/$(tr '/:' '__' <<<"$image")"
  done
}

normalized() {  # pioneer-telemetry:local -> library/pioneer-telemetry:local (as docker.io names it)
  [[ $1 == */* ]] && echo "$1" || echo "library/$1"
}

# --- certificates -----------------------------------------------------------------------------------
pki() {
  [[ -e $PKI/.complete ]] && return
  log "making the cluster's CA and certificates ($PKI)"
  rm -rf "$PKI"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=pioneer-telemetry-local-ca" -out ca.crt
    certificate apiserver "/CN=kube-apiserver" "serverAuth" \
      "IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    certificate kubelet-serving "/CN=$NODE" "serverAuth" "IP:$NODE_IP,DNS:$NODE"
    certificate apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    certificate admin "/O=system:masters/CN=admin" clientAuth
    certificate controller-manager "/CN=system:kube-controller-manager" clientAuth
    certificate scheduler "/CN=system:kube-scheduler" clientAuth
    certificate kubelet "/O=system:nodes/CN=system:node:$NODE" clientAuth
    certificate kube-proxy "/CN=system:kube-proxy" clientAuth
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    for name in admin controller-manager scheduler kubelet kube-proxy; do kubeconfig "$name"; done
  )
  touch "$PKI/.complete"
}

certificate() {  # certificate NAME SUBJECT USAGE [SANS]: NAME.key and NAME.crt signed by the CA
  local name=$1 subject=$2 usage=$3 sans=${4:-}
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -z $sans ]] || echo "subjectAltName=$sans"
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

kubeconfig() {  # kubeconfig NAME: NAME.kubeconfig with NAME's client certificate
  cat >"$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster: {server: "$API", certificate-authority: "$PKI/ca.crt"}
users:
  - name: $1
    user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}
contexts:
  - name: local
    context: {cluster: local, user: $1}
current-context: local
EOF
}

# --- processes --------------------------------------------------------------------------------------
running() { [[ -f $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() {  # start NAME COMMAND...: in its own session, logging to $LOGS/NAME.log, unless it runs
  local name=$1
  shift
  running "$name" && return
  log "starting $name"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds
  local what=$1 seconds=$2 deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      log "$what not reached in $seconds s"
      return 1
    fi
    sleep 0.5
  done
}

stop() {  # stop NAME: SIGTERM, then SIGKILL after 30 s
  running "$1" || { rm -f "$RUN/$1.pid"; return 0; }
  local pid
  pid=$(cat "$RUN/$1.pid")
  log "stopping $1 (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$RUN/$1.pid"
}

network() {
  modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  # (not `ip … | grep -q`: grep's early exit can fail the pipeline under pipefail)
  [[ $(ip -4 -o addr show dev "$BRIDGE") == *" inet $NODE_IP/"* ]] || ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  mkdir -p "$STATE/cni/net.d"
  cat >"$STATE/cni/net.d/10-pioneer.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "pioneer",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam", "routes": [{"dst": "0.0.0.0/0"}],
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "iptables"}
  ]
}
EOF
}

etcd_() {
  start etcd etcd --name "$NODE" --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "$NODE=http://127.0.0.1:$((ETCD_PORT + 1))" --listen-metrics-urls "" \
    --quota-backend-bytes 2147483648 --log-level warn
  wait_for "etcd health" 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

apiserver() {
  start kube-apiserver kube-apiserver --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port 6443 \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --profiling=false --v 1
  wait_for "the apiserver's /readyz" 120 kubectl get --raw /readyz
}

controllers() {
  start kube-controller-manager kube-controller-manager --kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs --cluster-cidr "$CLUSTER_CIDR" \
    --node-cidr-mask-size 24 --profiling=false --v 1
  start kube-scheduler kube-scheduler --kubeconfig "$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig "$PKI/scheduler.kubeconfig" --authorization-kubeconfig "$PKI/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v 1
}

containerd_() {
  running containerd && return  # its config is written only before it starts (kube-proxy exits when it changes)
  mkdir -p "$STATE/containerd"
  cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # root here lacks CAP_SYS_RESOURCE: a negative oom_score_adj (kubelet gives -998 to sandboxes) cannot be
  # set, and runc fails with "can't get final child's PID from pipe"; clamp to containerd's own instead
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for "containerd" 60 ctr_ version
}

kubelet_() {
  running kubelet && return
  mkdir -p "$STATE/kubelet"
  cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet-serving.crt"
tlsPrivateKeyFile: "$PKI/kubelet-serving.key"
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
failSwapOn: false
evictionHard: {memory.available: 100Mi, nodefs.available: 3%, imagefs.available: 3%}
imageGCHighThresholdPercent: 97
imageGCLowThresholdPercent: 95
EOF
  start kubelet kubelet --config "$STATE/kubelet/config.yaml" --kubeconfig "$PKI/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet/root" --cert-dir "$STATE/kubelet/pki" --hostname-override "$NODE" \
    --node-ip "$NODE_IP" --v 1
  wait_for "node $NODE Ready" 180 kubectl wait --for condition=Ready "node/$NODE" --timeout 5s
}

kube_proxy() {
  running kube-proxy && return
  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$PKI/kube-proxy.kubeconfig"}
hostnameOverride: $NODE
mode: nftables
clusterCIDR: $CLUSTER_CIDR
nodePortAddresses: [$NODE_IP/32]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy kube-proxy --config "$STATE/kube-proxy.yaml" --v 1
  wait_for "kube-proxy's /healthz" 60 curl -fsS http://127.0.0.1:10256/healthz
}

volumes() {  # VOLUMES local PersistentVolumes Available: released ones are emptied and made anew
  local i name phase
  for i in $(seq 0 $((VOLUMES - 1))); do
    name=pioneer-local-$i
    phase=$(kubectl get pv "$name" -o jsonpath='{.status.phase}' 2>/dev/null || true)
    [[ $phase == Available || $phase == Bound ]] && continue
    [[ -z $phase ]] || kubectl delete pv "$name" --wait=true >/dev/null
    rm -rf "${STATE:?}/volumes/$name"
    mkdir -p "$STATE/volumes/$name"
    kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: $name, labels: {pioneer-telemetry.local/volume: "true"}}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  local: {path: "$STATE/volumes/$name"}
  nodeAffinity:
    required:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$NODE]}]}]
EOF
  done
}

addons() {
  sed -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" "$HERE/addons.yaml" | kubectl apply -f - >/dev/null
  volumes
  wait_for "cluster DNS answering" 180 dns_answers
}

dns_answers() {  # a DNS query for the kubernetes Service, through the DNS Service's address (kube-proxy)
  python3 - "$DNS_IP" <<'EOF'
import socket, struct, sys
query = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"".join(
    bytes([len(label)]) + label.encode() for label in "kubernetes.default.svc.cluster.local".split(".")
) + b"\0" + struct.pack(">HH", 1, 1)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    udp.settimeout(2)
    udp.sendto(query, (sys.argv[1], 53))
    answer = udp.recv(512)
sys.exit(0 if struct.unpack(">H", answer[6:8])[0] >= 1 else 1)  # one answer record at least
EOF
}

up() {
  local begin=$SECONDS
  need_packages
  binaries
  docker_env
  images
  mkdir -p "$RUN" "$LOGS"
  pki
  network
  etcd_
  apiserver
  controllers
  containerd_
  load "$PAUSE_IMAGE" "$COREDNS_IMAGE"
  kubelet_
  kube_proxy
  addons
  log "cluster up in $((SECONDS - begin)) s: $(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1), node $NODE ($NODE_IP); for kubectl: eval \"\$(deploy/k8s/local-cluster.sh env)\""
}

down() {
  if running kubelet; then
    stop kubelet
  fi
  if ctr_ version >/dev/null 2>&1; then
    # the pods' sandboxes, removed through the CRI: their network (CNI DEL) goes with them
    crictl --runtime-endpoint "unix://$CONTAINERD_SOCK" rmp --all --force >/dev/null 2>&1 || true
  fi
  stop kube-proxy
  kube-proxy --cleanup >/dev/null 2>&1 || true
  stop containerd
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver
  stop etcd
  # what a removed pod can leave behind: volume mounts under the kubelet's dir, its log files
  { grep -o " $STATE/[^ ]*" /proc/mounts || true; } | sort -r | while read -r mount; do umount -l "$mount" || true; done
  find /var/log/containers -maxdepth 1 -type l -lname '/var/log/pods/*' -delete 2>/dev/null || true
  rm -rf /var/log/pods/*
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  firewall_cleanup
  log "cluster stopped (state kept in $STATE)"
}

firewall_cleanup() {  # the chains the CNI firewall plugin adds to the filter table once per node
  iptables -D FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD 2>/dev/null || true
  iptables -F CNI-FORWARD 2>/dev/null && iptables -X CNI-FORWARD 2>/dev/null || true
  iptables -F CNI-ADMIN 2>/dev/null && iptables -X CNI-ADMIN 2>/dev/null || true
}

env_exports() {
  printf 'export KUBECONFIG=%q\nexport PIONEER_K8S_BIN=%q\nexport PIONEER_K8S_NODE_IP=%q\n' "$KUBECONFIG" "$BIN" "$NODE_IP"
  printf 'export PATH="$PIONEER_K8S_BIN:$PATH"\n'
}

case ${1:-} in
  build) need_packages && binaries && docker_env && images ;;
  up) up ;;
  load) shift && docker_env && load "$@" ;;
  env) env_exports ;;
  down) down ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
