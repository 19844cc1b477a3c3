#!/usr/bin/env bash
# Kubernetes part of the test environment: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok (simulated nodes, so pods get scheduled and reach Running), plus the
# kubectl and helm clients. Everything is built from source through the Go module proxy, with
# the wrapper modules under e2e/env/kube/ (one per build), and cached by version under
# $TESTENV_CACHE/kube/<k8s version>/bin/.
#
#   kube.sh install   build what is missing (a cached component is not rebuilt)
#   kube.sh start     fresh cluster: certs, etcd, apiserver, controller-manager, scheduler,
#                     kwok and one fake node; writes $TESTENV_STATE/kube.env
#   kube.sh stop      stop all of them (safe when not running)
#
# Written for the tests (kube.env):
#   TIDINGS_TEST_KUBECONFIG  admin kubeconfig (client certificate in group system:masters)
#   TIDINGS_TEST_BIN_DIR     directory with kubectl, helm, kwok, etcd, kube-* binaries
#   TIDINGS_TEST_KUBE_NODE   name of the fake (kwok) node
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- versions (bump here; the wrapper go.mod files under e2e/env/kube/ must agree) ---------
KUBE_VERSION=v1.34.4  # k8s.io/kubernetes; its staging modules are pinned to v0.34.4
ETCD_VERSION=v3.6.16  # go.etcd.io/etcd/server/v3
KWOK_VERSION=v0.7.0   # sigs.k8s.io/kwok
HELM_VERSION=v3.19.5  # helm.sh/helm/v3

KUBE_MODULES="$TESTENV_LIB_DIR/kube"
KUBE_HOME="$TESTENV_CACHE/kube/$KUBE_VERSION"
KUBE_BIN="$KUBE_HOME/bin"

# --- ports (loopback only) ----------------------------------------------------------------
ETCD_CLIENT_PORT=12379
ETCD_PEER_PORT=12380
ETCD_METRICS_PORT=12381
APISERVER_PORT=16443
KCM_PORT=16457
SCHEDULER_PORT=16459
KWOK_PORT=16450
NODE_NAME=kwok-node-0

# --- the control plane's shape (node.sh, the real node's cluster, overrides these) ------------
CP=kube                       # daemon/log name prefix: $CP-etcd, $CP-apiserver, ...
APISERVER_BIND=127.0.0.1
APISERVER_ADVERTISE=127.0.0.1 # where in-cluster clients reach the apiserver (kubernetes Service)
ENDPOINT_RECONCILER=none      # kwok pods never call the apiserver through the Service
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1          # the kubernetes Service: first address of SERVICE_CIDR

KSTATE="$TESTENV_STATE/kube"
PKI="$KSTATE/pki"
ADMIN_KUBECONFIG="$KSTATE/admin.kubeconfig"
# Daemons in stop order; each logs to $TESTENV_LOGS/<name>.log (the previous run's to .log.prev)
# and has its pid file in $TESTENV_RUN/<name>.pid.
DAEMONS=(kube-kwok kube-scheduler kube-controller-manager kube-apiserver kube-etcd)

# ------------------------------------------------------------------------------------------
# install
# ------------------------------------------------------------------------------------------

go_env() {
    command -v go >/dev/null || die "go is not installed (Go >= 1.24 needed to build the Kubernetes binaries)"
    export GOMODCACHE="$TESTENV_CACHE/go/mod" GOCACHE="$TESTENV_CACHE/go/build"
    # The local toolchain builds everything; -p=2 keeps compile memory sane on 2 cores.
    export GOTOOLCHAIN=local GOFLAGS="-p=2 -mod=readonly -buildvcs=false" CGO_ENABLED=0
    mkdir -p "$GOMODCACHE" "$GOCACHE" "$KUBE_BIN"
}

# stamp <component> <version>: what a build depends on (version + wrapper go.mod/go.sum).
stamp() {
    printf '%s %s\n' "$2" "$(cat "$KUBE_MODULES/$1/go.mod" "$KUBE_MODULES/$1/go.sum" | sha256sum | cut -c1-16)"
}

# built <component> <version> <binary...>: true when the cached binaries match the stamp.
built() {
    local component=$1 version=$2 bin
    shift 2
    [[ -f $KUBE_BIN/.stamp-$component && "$(cat "$KUBE_BIN/.stamp-$component")" == "$(stamp "$component" "$version")" ]] || return 1
    for bin in "$@"; do [[ -x $KUBE_BIN/$bin ]] || return 1; done
}

# build <component> <version> <ldflags> <package...>: go build the packages from the wrapper
# module e2e/env/kube/<component>/ into the bin dir (binary name = last path element, or
# $BUILD_NAME when set).
build() {
    local component=$1 version=$2 ldflags=$3 start=$SECONDS out
    shift 3
    out="$KUBE_HOME/.build-$component"
    rm -rf "$out" && mkdir -p "$out"
    log "building $component $version: $*"
    (cd "$KUBE_MODULES/$component" && go build -trimpath -ldflags "$ldflags" -o "$out/${BUILD_NAME:-}" "$@") ||
        die "building $component $version failed"
    mv -f "$out"/* "$KUBE_BIN/"
    rmdir "$out"
    stamp "$component" "$version" >"$KUBE_BIN/.stamp-$component"
    log "built $component $version in $((SECONDS - start))s"
}

# check_pins: the versions above are the ones the wrapper modules require.
check_pins() {
    local staging="v0.${KUBE_VERSION#v1.}" pin
    for pin in "etcd go.etcd.io/etcd/server/v3 $ETCD_VERSION" "kubernetes k8s.io/kubernetes $KUBE_VERSION" \
        "kubernetes k8s.io/client-go => k8s.io/client-go $staging" "kwok sigs.k8s.io/kwok $KWOK_VERSION" \
        "helm helm.sh/helm/v3 $HELM_VERSION"; do
        grep -qE "^\s*(require )?${pin#* }\s*(//.*)?$" "$KUBE_MODULES/${pin%% *}/go.mod" ||
            die "e2e/env/kube/${pin%% *}/go.mod does not pin '${pin#* }' (update it: go get + go mod tidy)"
    done
}

# release_date <module> <version>: the module's publication time (used as the build date).
release_date() {
    local info="$GOMODCACHE/cache/download/$1/@v/$2.info"
    [[ -f $info ]] || (cd "$KUBE_MODULES/kubernetes" && go mod download "$1@$2") >/dev/null 2>&1 || true
    sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info" 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ
}

do_install() {
    local total=$SECONDS
    go_env
    check_pins
    command -v openssl >/dev/null || {
        log "openssl not found; installing it from Debian"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; } >&2 ||
            die "openssl is needed for the cluster certificates and could not be installed"
    }

    if built etcd "$ETCD_VERSION" etcd; then
        log "etcd $ETCD_VERSION: cached"
    else
        BUILD_NAME=etcd build etcd "$ETCD_VERSION" \
            "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" go.etcd.io/etcd/server/v3
    fi

    local kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
    if built kubernetes "$KUBE_VERSION" "${kube_bins[@]}"; then
        log "kubernetes $KUBE_VERSION: cached"
    else
        local v=${KUBE_VERSION#v} major minor ldflags="-s -w" pkg key val
        major=${v%%.*}
        minor=${v#*.} && minor=${minor%%.*}
        for key in gitVersion=$KUBE_VERSION gitMajor=$major gitMinor=$minor gitTreeState=archive \
            gitCommit=unknown buildDate=$(release_date k8s.io/kubernetes "$KUBE_VERSION"); do
            val=${key#*=} key=${key%%=*}
            for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
                ldflags+=" -X $pkg.$key=$val"
            done
        done
        build kubernetes "$KUBE_VERSION" "$ldflags" "${kube_bins[@]/#/k8s.io/kubernetes/cmd/}"
    fi

    if built kwok "$KWOK_VERSION" kwok; then
        log "kwok $KWOK_VERSION: cached"
    else
        build kwok "$KWOK_VERSION" "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBE_VERSION" \
            sigs.k8s.io/kwok/cmd/kwok
    fi

    if built helm "$HELM_VERSION" helm; then
        log "helm $HELM_VERSION: cached"
    else
        build helm "$HELM_VERSION" "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34" \
            helm.sh/helm/v3/cmd/helm
    fi
    log "kube install done in $((SECONDS - total))s; binaries in $KUBE_BIN"
}

# ------------------------------------------------------------------------------------------
# start
# ------------------------------------------------------------------------------------------

# cert <name> <subject> [<subjectAltName>]: key + certificate signed by the cluster CA.
cert() {
    local name=$1 subj=$2 san=${3:-} ext="$PKI/$1.ext"
    openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
    openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [[ -n $san ]]; then
            echo "extendedKeyUsage=serverAuth,clientAuth"
            echo "subjectAltName=$san"
        else
            echo "extendedKeyUsage=clientAuth"
        fi
    } >"$ext"
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$ext"
}

# kubeconfig <file> <cert name>: kubeconfig for the apiserver with that client certificate.
kubeconfig() {
    local file=$1 name=$2
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tidings-test
  cluster:
    server: https://$APISERVER_ADVERTISE:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$name.crt")
    client-key-data: $(base64 -w0 <"$PKI/$name.key")
contexts:
- name: tidings-test
  context:
    cluster: tidings-test
    user: $name
current-context: tidings-test
EOF
    chmod 600 "$file"
}

make_pki() {
    mkdir -p "$PKI"
    openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=tidings-test-ca" -days 30 -sha256 \
        -out "$PKI/ca.crt" 2>/dev/null
    cert apiserver "/CN=kube-apiserver" \
        "IP:127.0.0.1,IP:$APISERVER_ADVERTISE,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    cert admin "/O=system:masters/CN=tidings-test-admin"
    cert kube-controller-manager "/CN=system:kube-controller-manager"
    cert kube-scheduler "/CN=system:kube-scheduler"
    cert kwok "/O=system:masters/CN=kwok"
    # Aggregation layer (front proxy): the apiserver's client identity towards extension
    # apiservers, and the CA they trust for it (published in extension-apiserver-authentication).
    cert front-proxy-client "/CN=front-proxy-client"
    # The apiserver's identity towards kubelets (logs, exec, port-forward).
    cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    # Service-account token signing key pair.
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    chmod 600 "$PKI"/*.key
    kubeconfig "$ADMIN_KUBECONFIG" admin
    kubeconfig "$KSTATE/kube-controller-manager.kubeconfig" kube-controller-manager
    kubeconfig "$KSTATE/kube-scheduler.kubeconfig" kube-scheduler
    kubeconfig "$KSTATE/kwok.kubeconfig" kwok
}

kctl() { "$KUBE_BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=5s "$@"; }

healthz() { curl -ksf --max-time 3 "https://127.0.0.1:$1/healthz" | grep -qx ok; }

node_ready() {
    [[ "$(kctl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

fake_node() {
    cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: $NODE_NAME
    node-role.kubernetes.io/agent: ""
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 1Ti}
  capacity: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 1Ti}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: $KUBE_VERSION-kwok
    kubeProxyVersion: ""
    bootID: ""
    containerRuntimeVersion: ""
    kernelVersion: ""
    machineID: ""
    osImage: ""
    systemUUID: ""
EOF
}

check_ports() {
    local port
    for port in $ETCD_CLIENT_PORT $ETCD_PEER_PORT $ETCD_METRICS_PORT $APISERVER_PORT $KCM_PORT \
        $SCHEDULER_PORT $KWOK_PORT; do
        ! port_open 127.0.0.1 "$port" || die "port $port on 127.0.0.1 is already in use (another cluster still running?)"
    done
}

# start_control_plane: fresh certificates, etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler in $KSTATE, shaped by the variables above; returns once all are healthy.
start_control_plane() {
    check_ports
    rm -rf "$KSTATE"
    local name
    for name in "${DAEMONS[@]}"; do
        [[ ! -f $TESTENV_LOGS/$name.log ]] || mv -f "$TESTENV_LOGS/$name.log" "$TESTENV_LOGS/$name.log.prev"
    done
    mkdir -p "$KSTATE"
    make_pki

    log "starting etcd $ETCD_VERSION on 127.0.0.1:$ETCD_CLIENT_PORT"
    start_bg "$CP-etcd" "$TESTENV_LOGS/$CP-etcd.log" "$KUBE_BIN/etcd" \
        --name=tidings-test --data-dir="$KSTATE/etcd" \
        --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="tidings-test=http://127.0.0.1:$ETCD_PEER_PORT" \
        --listen-metrics-urls="http://127.0.0.1:$ETCD_METRICS_PORT" \
        --unsafe-no-fsync --quota-backend-bytes=2147483648 --log-level=warn
    wait_until 60 etcd "$TESTENV_LOGS/$CP-etcd.log" \
        curl -sf --max-time 3 "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

    log "starting kube-apiserver $KUBE_VERSION on https://$APISERVER_ADVERTISE:$APISERVER_PORT"
    start_bg "$CP-apiserver" "$TESTENV_LOGS/$CP-apiserver.log" "$KUBE_BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --bind-address="$APISERVER_BIND" --advertise-address="$APISERVER_ADVERTISE" --secure-port="$APISERVER_PORT" \
        --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --authorization-mode=Node,RBAC --allow-privileged=true \
        --endpoint-reconciler-type="$ENDPOINT_RECONCILER" \
        --requestheader-client-ca-file="$PKI/ca.crt" --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
        --proxy-client-key-file="$PKI/front-proxy-client.key" \
        --kubelet-preferred-address-types=InternalIP,Hostname \
        --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
        --profiling=false --v=1
    wait_until 120 kube-apiserver "$TESTENV_LOGS/$CP-apiserver.log" kctl get --raw /readyz

    log "starting kube-controller-manager"
    start_bg "$CP-controller-manager" "$TESTENV_LOGS/$CP-controller-manager.log" \
        "$KUBE_BIN/kube-controller-manager" \
        --kubeconfig="$KSTATE/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig="$KSTATE/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig="$KSTATE/kube-controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$KSTATE/kcm-certs" \
        --leader-elect=false --use-service-account-credentials=true \
        --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
        --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --flex-volume-plugin-dir="$KSTATE/flexvolume" \
        --controllers='*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' \
        --profiling=false --v=1

    log "starting kube-scheduler"
    start_bg "$CP-scheduler" "$TESTENV_LOGS/$CP-scheduler.log" "$KUBE_BIN/kube-scheduler" \
        --kubeconfig="$KSTATE/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig="$KSTATE/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig="$KSTATE/kube-scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$KSTATE/scheduler-certs" \
        --leader-elect=false --profiling=false --v=1

    wait_until 60 "$CP-controller-manager" "$TESTENV_LOGS/$CP-controller-manager.log" healthz "$KCM_PORT"
    wait_until 60 "$CP-scheduler" "$TESTENV_LOGS/$CP-scheduler.log" healthz "$SCHEDULER_PORT"
    # The service-account controller (controller-manager) creates the default account.
    wait_until 60 "$CP-controller-manager (default service account)" \
        "$TESTENV_LOGS/$CP-controller-manager.log" kctl -n default get serviceaccount default
}

do_start() {
    do_install
    do_stop
    # Stop whatever did start when a later step fails: nothing is left behind.
    trap 'rc=$?; if ((rc)); then log "kube start failed; stopping what was started"; do_stop; fi' EXIT
    rm -f "$TESTENV_STATE/kube.env"
    local t0=$SECONDS
    start_control_plane

    log "starting kwok $KWOK_VERSION"
    # Its own (empty) config, so a ~/.kwok/kwok.yaml cannot change the simulation: the
    # built-in default node and pod stages apply (pods go Running, then are removed on delete).
    printf 'apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions: {}\n' \
        >"$KSTATE/kwok.yaml"
    start_bg kube-kwok "$TESTENV_LOGS/kube-kwok.log" "$KUBE_BIN/kwok" \
        --kubeconfig="$KSTATE/kwok.kubeconfig" --config="$KSTATE/kwok.yaml" \
        --manage-all-nodes=false \
        --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
        --node-ip=127.0.0.1 --node-port="$KWOK_PORT" --server-address="127.0.0.1:$KWOK_PORT" \
        --cidr=10.244.0.1/16 --node-lease-duration-seconds=40

    fake_node | kctl apply -f - >/dev/null
    wait_until 60 "kwok (node $NODE_NAME Ready)" "$TESTENV_LOGS/kube-kwok.log" node_ready

    write_env kube \
        "TIDINGS_TEST_KUBECONFIG=$ADMIN_KUBECONFIG" \
        "TIDINGS_TEST_BIN_DIR=$KUBE_BIN" \
        "TIDINGS_TEST_KUBE_NODE=$NODE_NAME"
    log "kube is up in $((SECONDS - t0))s: $("$KUBE_BIN/kubectl" version --kubeconfig "$ADMIN_KUBECONFIG" 2>&1 | tr '\n' ' ')"
    trap - EXIT
}

# ------------------------------------------------------------------------------------------
# stop
# ------------------------------------------------------------------------------------------

do_stop() {
    local name
    for name in "${DAEMONS[@]}"; do
        if pid_alive "$name"; then
            log "stopping $name"
        fi
        stop_bg "$name" 20
    done
    rm -f "$TESTENV_STATE/kube.env"
}

# Sourced by node.sh for its functions; run for the kwok cluster.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    case "${1:-}" in
    install) do_install ;;
    start) do_start ;;
    stop) do_stop ;;
    *)
        echo "usage: $0 install|start|stop" >&2
        exit 2
        ;;
    esac
fi
