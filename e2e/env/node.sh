#!/usr/bin/env bash
# A real single-node Kubernetes for the e2e drills (tests/e2e/): its own control plane
# (etcd, kube-apiserver, kube-controller-manager, kube-scheduler — built like kube.sh's, on
# other ports, beside the kwok cluster) plus a real node: Debian's containerd 1.6 and runc,
# the kubelet (cgroupfs driver: these machines have cgroup v1 and no systemd as PID 1),
# kube-proxy (iptables) and the CNI bridge plugin on the bridge podnet.sh made. The pause
# image and the Tidings images are built without a daemon (e2e/image/build.sh) and imported
# into containerd's k8s.io namespace, where the kubelet sees them.
#
#   node.sh install   Debian packages + the Kubernetes binaries (kube.sh install)
#   node.sh start     fresh cluster with one Ready node; writes $TESTENV_STATE/node.env
#   node.sh stop      stop everything, remove the pods' containers, mounts and rules
#   node.sh import <archive...>   import OCI image archives into the node's containerd
#
# Needs root, and podnet.sh started first (the host services listen on its bridge too).
#
# Written for the tests (node.env):
#   TIDINGS_TEST_NODE_KUBECONFIG  admin kubeconfig of this cluster
#   TIDINGS_TEST_NODE_NAME        the node's name
#   TIDINGS_TEST_NODE_BIN_DIR     directory with kubectl and helm
#   TIDINGS_TEST_CONTAINERD_SOCK  containerd's socket (ctr --address ...)
#   TIDINGS_TEST_NODE_IMAGE       the Tidings image repository imported into containerd
#   TIDINGS_TEST_NODE_IMAGE_TAGS  its tags there (comma-separated; the drills roll between them)
source "$(dirname "${BASH_SOURCE[0]}")/kube.sh"
# A step that fails under `set -e` says which, instead of ending the script silently.
set -E
trap 'log "node.sh: \"$BASH_COMMAND\" failed (line $LINENO)"' ERR

# --- this cluster's shape (kube.sh's defaults are the kwok cluster's) -----------------------
CP=node
ETCD_CLIENT_PORT=22379
ETCD_PEER_PORT=22380
ETCD_METRICS_PORT=22381
APISERVER_PORT=26443
KCM_PORT=26457
SCHEDULER_PORT=26459
KWOK_PORT=26450 # unused here; kube.sh's port check names it
KUBELET_PORT=20250
KUBELET_HEALTHZ_PORT=20248
PROXY_METRICS_PORT=20249
PROXY_HEALTHZ_PORT=20256
# Pods reach the apiserver through the kubernetes Service at the bridge's address.
APISERVER_BIND=$POD_GATEWAY_IP
APISERVER_ADVERTISE=$POD_GATEWAY_IP
ENDPOINT_RECONCILER=lease
SERVICE_CIDR=10.97.0.0/16
SERVICE_IP=10.97.0.1
NODE_NAME=tidings-node-0

KSTATE="$TESTENV_STATE/kube-node"
PKI="$KSTATE/pki"
ADMIN_KUBECONFIG="$KSTATE/admin.kubeconfig"
# containerd's sockets and runtime state: a short path (unix socket paths are limited).
NODE_RUN=/run/tidings-node
CONTAINERD_SOCK="$NODE_RUN/containerd.sock"
DAEMONS=(node-proxy node-kubelet node-containerd node-scheduler node-controller-manager node-apiserver node-etcd)

PAUSE_IMAGE=registry.k8s.io/pause:3.6 # containerd 1.6's default sandbox_image, named in its config
# Registries whose pulls are sent to a closed local port (containerd 1.6 has no "_default"
# hosts entry, so each is named): images come only from node.sh import.
NO_PULL_REGISTRIES=(docker.io registry-1.docker.io ghcr.io quay.io gcr.io registry.k8s.io
    k8s.gcr.io mcr.microsoft.com public.ecr.aws registry.gitlab.com registry.invalid)
NO_PULL_ENDPOINT=127.0.0.1:9 # discard's port: nothing listens, a connection is refused
TIDINGS_IMAGE=docker.io/tidings/tidings
TIDINGS_IMAGE_TAGS=(e2e-1 e2e-2)
IMAGES_DIR="$TESTENV_STATE/images"

ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# ------------------------------------------------------------------------------------------
# install
# ------------------------------------------------------------------------------------------

node_install() {
    local pkgs=() cmd
    for cmd in containerd:containerd runc:runc iptables:iptables conntrack:conntrack \
        /usr/lib/cni/bridge:containernetworking-plugins; do
        [[ -x ${cmd%%:*} ]] || command -v "${cmd%%:*}" >/dev/null || pkgs+=("${cmd#*:}")
    done
    if ((${#pkgs[@]})); then
        log "installing from Debian: ${pkgs[*]}"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"; } >&2 ||
            die "could not install ${pkgs[*]}"
    fi
    do_install
}

# ------------------------------------------------------------------------------------------
# start
# ------------------------------------------------------------------------------------------

write_containerd_config() {
    mkdir -p "$KSTATE/containerd" "$KSTATE/cni/net.d" "$NODE_RUN"
    cat >"$KSTATE/containerd/config.toml" <<TOML
version = 2
root = "$KSTATE/containerd/root"
state = "$NODE_RUN/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$KSTATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc, with negative oom_score_adj raised to 0: see node/runc-oom-clamp.
        BinaryName = "$TESTENV_LIB_DIR/node/runc-oom-clamp"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$KSTATE/cni/net.d"
  # No pull leaves this machine: every public registry's host is a closed local port, so a
  # pull of an image that was not imported fails at once ("connection refused", naming the
  # registry) instead of waiting on the network. Import images with node.sh import.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$KSTATE/containerd/certs.d"
TOML
    local registry
    for registry in "${NO_PULL_REGISTRIES[@]}"; do
        mkdir -p "$KSTATE/containerd/certs.d/$registry"
        cat >"$KSTATE/containerd/certs.d/$registry/hosts.toml" <<HOSTS
# Written by e2e/env/node.sh: pulls from $registry stay on this machine (and fail).
server = "http://$NO_PULL_ENDPOINT"
[host."http://$NO_PULL_ENDPOINT"]
  capabilities = ["pull", "resolve"]
HOSTS
    done
    cat >"$KSTATE/cni/net.d/10-tidings.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "tidings",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "${POD_GATEWAY_IP%.*}.10",
                     "rangeEnd": "${POD_GATEWAY_IP%.*}.250", "gateway": "$POD_GATEWAY_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$KSTATE/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

write_kubelet_config() {
    mkdir -p "$KSTATE/kubelet"
    cat >"$KSTATE/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $POD_GATEWAY_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
podCIDR: $POD_SUBNET
maxPods: 60
serializeImagePulls: false
# A test node on a shared disk: never evict for disk or image-filesystem pressure.
evictionHard: {memory.available: 200Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
protectKernelDefaults: false
makeIPTablesUtilChains: true
resolvConf: /etc/resolv.conf
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusReportFrequency: 10s
shutdownGracePeriod: 0s
YAML
    cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
    kubeconfig "$KSTATE/kubelet.kubeconfig" kubelet
}

write_proxy_config() {
    cert kube-proxy "/CN=system:kube-proxy"
    kubeconfig "$KSTATE/kube-proxy.kubeconfig" kube-proxy
    cat >"$KSTATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KSTATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_SUBNET
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
# Service traffic between pods on one bridge: masquerade it so that replies come back
# through the host's conntrack. Leave the machine's conntrack sysctls alone.
iptables: {masqueradeAll: true, localhostNodePorts: false}
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
}

containerd_ready() { ctr --address "$CONTAINERD_SOCK" version; }
kubelet_healthy() { curl -sf --max-time 3 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" | grep -qx ok; }
proxy_healthy() { curl -sf --max-time 3 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"; }
node_ready() {
    [[ "$(kctl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

# import_images <archive...>: OCI archives into containerd's k8s.io namespace (the kubelet's).
import_images() {
    local archive
    for archive in "$@"; do
        ctr_ images import --no-unpack=false "$archive" >/dev/null ||
            die "could not import $archive into containerd"
    done
}

build_images() {
    local t0=$SECONDS
    mkdir -p "$IMAGES_DIR"
    rm -f "$IMAGES_DIR"/*.tar
    bash "$REPO_ROOT/e2e/image/build.sh" pause --name "${PAUSE_IMAGE%:*}" --tag "${PAUSE_IMAGE##*:}" \
        --out "$IMAGES_DIR" >/dev/null || die "building the pause image failed"
    bash "$REPO_ROOT/e2e/image/build.sh" tidings --name "$TIDINGS_IMAGE" \
        $(printf -- "--tag %s " "${TIDINGS_IMAGE_TAGS[@]}") --out "$IMAGES_DIR" >/dev/null ||
        die "building the Tidings image failed"
    log "images built in $((SECONDS - t0))s"
}

node_start() {
    pod_bridge_up || die "the pod network is not up: run podnet.sh start first"
    node_install
    node_stop
    trap 'rc=$?; if ((rc)); then log "node start failed; stopping what was started"; node_stop; fi' EXIT
    rm -f "$TESTENV_STATE/node.env"
    local t0=$SECONDS
    build_images &
    local images_pid=$!
    start_control_plane

    write_containerd_config
    log "starting containerd $(containerd --version | awk '{print $3}')"
    start_bg node-containerd "$TESTENV_LOGS/node-containerd.log" containerd \
        --config "$KSTATE/containerd/config.toml" --log-level warn
    wait_until 30 containerd "$TESTENV_LOGS/node-containerd.log" containerd_ready
    wait "$images_pid" || die "building the images failed"
    import_images "$IMAGES_DIR"/*.tar

    # ClusterIPs from the host: a route into the bridge, so that a connect() finds one even
    # without a default route (kube-proxy's OUTPUT rules then rewrite the address).
    ip route replace "$SERVICE_CIDR" dev "$POD_BRIDGE"

    write_kubelet_config
    log "starting kubelet $KUBE_VERSION as node $NODE_NAME"
    start_bg node-kubelet "$TESTENV_LOGS/node-kubelet.log" "$KUBE_BIN/kubelet" \
        --config="$KSTATE/kubelet/config.yaml" --kubeconfig="$KSTATE/kubelet.kubeconfig" \
        --root-dir="$KSTATE/kubelet/root" --cert-dir="$KSTATE/kubelet/pki" \
        --hostname-override="$NODE_NAME" --node-ip="$POD_GATEWAY_IP" --v=1
    wait_until 90 kubelet "$TESTENV_LOGS/node-kubelet.log" kubelet_healthy

    write_proxy_config
    log "starting kube-proxy"
    start_bg node-proxy "$TESTENV_LOGS/node-proxy.log" "$KUBE_BIN/kube-proxy" \
        --config="$KSTATE/kube-proxy.yaml" --v=1
    wait_until 60 kube-proxy "$TESTENV_LOGS/node-proxy.log" proxy_healthy
    wait_until 120 "kubelet (node $NODE_NAME Ready)" "$TESTENV_LOGS/node-kubelet.log" node_ready

    local tags
    tags=$(IFS=,; echo "${TIDINGS_IMAGE_TAGS[*]}")
    write_env node \
        "TIDINGS_TEST_NODE_KUBECONFIG=$ADMIN_KUBECONFIG" \
        "TIDINGS_TEST_NODE_NAME=$NODE_NAME" \
        "TIDINGS_TEST_NODE_BIN_DIR=$KUBE_BIN" \
        "TIDINGS_TEST_CONTAINERD_SOCK=$CONTAINERD_SOCK" \
        "TIDINGS_TEST_NODE_IMAGE=$TIDINGS_IMAGE" \
        "TIDINGS_TEST_NODE_IMAGE_TAGS=$tags"
    log "node $NODE_NAME is Ready in $((SECONDS - t0))s"
    trap - EXIT
}

# ------------------------------------------------------------------------------------------
# stop
# ------------------------------------------------------------------------------------------

# remove_containers: kill every container and sandbox the kubelet left, delete them.
remove_containers() {
    [[ -S $CONTAINERD_SOCK ]] && containerd_ready >/dev/null 2>&1 || return 0
    local task
    for task in $(ctr_ tasks list -q 2>/dev/null); do
        ctr_ tasks kill --signal SIGKILL "$task" >/dev/null 2>&1 || true
    done
    sleep 1
    for task in $(ctr_ tasks list -q 2>/dev/null); do
        ctr_ tasks delete --force "$task" >/dev/null 2>&1 || true
    done
    for task in $(ctr_ containers list -q 2>/dev/null); do
        ctr_ containers delete "$task" >/dev/null 2>&1 || true
    done
}

# unmount_under <dir>: unmount everything mounted below a directory, deepest first.
unmount_under() {
    local dir=$1 mnt
    [[ -d $dir ]] || return 0
    awk -v d="$dir" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done
}

# remove_kube_rules: the kubelet's own iptables chains (KUBE-FIREWALL, canaries), which
# kube-proxy --cleanup leaves: rules that jump to them first, then the chains.
remove_kube_rules() {
    local tool table rule chain
    for tool in iptables ip6tables; do
        command -v "$tool" >/dev/null || continue
        for table in filter nat mangle; do
            "$tool" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' |
                while read -r rule; do
                    # shellcheck disable=SC2086  # the rule's words, as iptables printed them
                    eval "$tool -t $table ${rule/#-A/-D}" 2>/dev/null || true
                done || true # no such rule: grep finds nothing
            for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do
                "$tool" -t "$table" -F "$chain" 2>/dev/null || true
            done
            for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do
                "$tool" -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    done
}

node_stop() {
    stop_bg node-proxy 10
    if [[ -x $KUBE_BIN/kube-proxy ]]; then
        "$KUBE_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    fi
    stop_bg node-kubelet 10
    remove_kube_rules
    remove_containers
    stop_bg node-containerd 10
    # Shims outlive containerd: end the ones of this node.
    pkill -KILL -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null || true
    # The pods' network namespaces (named cni-*) hold their veths on the bridge.
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '/^cni-/ {print $1}'); do
        ip netns delete "$ns" 2>/dev/null || true
    done
    unmount_under "$KSTATE"
    unmount_under "$NODE_RUN"
    local name
    for name in node-scheduler node-controller-manager node-apiserver node-etcd; do
        stop_bg "$name" 20
    done
    ip route del "$SERVICE_CIDR" dev "$POD_BRIDGE" 2>/dev/null || true
    rm -rf "$NODE_RUN"
    rm -f "$TESTENV_STATE/node.env"
}

case "${1:-}" in
install) node_install ;;
start) node_start ;;
stop) node_stop ;;
import)
    shift
    import_images "$@"
    ;;
*)
    echo "usage: $0 install|start|stop|import <archive...>" >&2
    exit 2
    ;;
esac
