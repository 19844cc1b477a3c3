#!/usr/bin/env bash
# cert-manager and the Gateway API CRDs for the test environment's two clusters.
#
# - cert-manager's controller (v1.11.5), built from the Go module proxy with the wrapper module
#   e2e/env/kube/cert-manager/ (like kube.sh's builds) and cached under
#   $TESTENV_CACHE/cert-manager/<version>/bin/. Its CRDs come from the same module zip
#   (deploy/crds/crd-*.yaml, with the Helm-templated labels removed). v1.11.5 is the last
#   release whose cmd/controller is in the root module: since v1.12 it is a module of its own
#   whose path does not match its directory, so no module proxy serves it.
# - The Gateway API CRDs (v1.6.3, standard channel: config/crd/standard/ of
#   sigs.k8s.io/gateway-api, with its ValidatingAdmissionPolicy), from `go mod download`.
#
#   certmanager.sh install   build/download what is missing (cached by version)
#   certmanager.sh start     needs kube.sh's and node.sh's clusters (waits for them, bounded):
#                            applies both sets of CRDs to both clusters, runs the controller
#                            out of cluster against the node cluster only; writes
#                            $TESTENV_STATE/certmanager.env
#   certmanager.sh stop      stop the controller (safe when not running); the CRDs stay
#
# No webhook and no cainjector: the CRDs' schemas still validate, and the controller itself
# approves and signs CertificateRequests of cert-manager.io issuers (CA, SelfSigned).
#
# Written for the tests (certmanager.env):
#   TIDINGS_TEST_CERT_MANAGER_VERSION       the controller's version (v1.11.5)
#   TIDINGS_TEST_GATEWAY_API_VERSION        the Gateway API CRDs' version (v1.6.3, standard)
#   TIDINGS_TEST_CERT_MANAGER_METRICS       host:port of the controller's /metrics
#   TIDINGS_TEST_CERT_MANAGER_KUBECONFIG    the cluster the controller serves (the node's)
#   TIDINGS_TEST_CERT_MANAGER_CLUSTER_RESOURCE_NAMESPACE  where ClusterIssuers keep secrets
source "$(dirname "${BASH_SOURCE[0]}")/kube.sh"

# --- versions (the wrapper go.mod under e2e/env/kube/cert-manager/ must agree) -------------
CERT_MANAGER_VERSION=v1.11.5 # github.com/cert-manager/cert-manager
GATEWAY_API_VERSION=v1.6.3   # sigs.k8s.io/gateway-api (v1.7.0 needs Go >= 1.27)

CM_HOME="$TESTENV_CACHE/cert-manager/$CERT_MANAGER_VERSION"
CM_BIN="$CM_HOME/bin"
CM_CRDS="$CM_HOME/crds"
GATEWAY_CRDS="$TESTENV_CACHE/cert-manager/gateway-api-$GATEWAY_API_VERSION/standard"
KUBECTL="$KUBE_BIN/kubectl"

CM_METRICS_PORT=29402 # node cluster: 2xxxx ports (kube.sh 1xxxx)
CM_CLUSTER_RESOURCE_NAMESPACE=kube-system
CLUSTER_WAIT=${TIDINGS_TESTENV_CLUSTER_WAIT:-180} # seconds to wait for the two clusters

# ------------------------------------------------------------------------------------------
# install
# ------------------------------------------------------------------------------------------

# cm_build: the controller, with kube.sh's build/built helpers pointed at our own bin dir.
cm_build() {
    local KUBE_HOME=$CM_HOME KUBE_BIN=$CM_BIN
    mkdir -p "$CM_BIN"
    if built cert-manager "$CERT_MANAGER_VERSION" cert-manager-controller; then
        log "cert-manager $CERT_MANAGER_VERSION: cached"
    else
        BUILD_NAME=cert-manager-controller build cert-manager "$CERT_MANAGER_VERSION" \
            "-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=$CERT_MANAGER_VERSION" \
            github.com/cert-manager/cert-manager/cmd/controller
    fi
}

# cm_crds: cert-manager's CRDs from its module zip, without the Helm-templated labels block.
cm_crds() {
    [[ -f $CM_CRDS/.complete ]] && return 0
    local dir tmp="$CM_CRDS.tmp.$$" f
    dir=$(cd "$KUBE_MODULES/cert-manager" && go mod download github.com/cert-manager/cert-manager &&
        go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager) ||
        die "could not download github.com/cert-manager/cert-manager $CERT_MANAGER_VERSION"
    compgen -G "$dir/deploy/crds/crd-*.yaml" >/dev/null || die "no deploy/crds/crd-*.yaml in $dir"
    rm -rf "$tmp" && mkdir -p "$tmp"
    for f in "$dir"/deploy/crds/crd-*.yaml; do
        sed '/^  labels:$/,/^spec:/{/^spec:/!d}' "$f" >"$tmp/${f##*/}"
    done
    ! grep -l '{{' "$tmp"/*.yaml >&2 || die "Helm template text left in cert-manager's CRDs"
    touch "$tmp/.complete"
    rm -rf "$CM_CRDS" && mv "$tmp" "$CM_CRDS"
    log "cert-manager $CERT_MANAGER_VERSION CRDs in $CM_CRDS"
}

# gateway_crds: the Gateway API's standard channel, downloaded (checksum-verified) as a module.
gateway_crds() {
    [[ -f $GATEWAY_CRDS/.complete ]] && return 0
    local json dir tmp="$GATEWAY_CRDS.tmp.$$"
    # Outside any module (a module's -mod=readonly does not apply to a download by version).
    json=$(cd / && GOFLAGS=-buildvcs=false go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION") ||
        die "could not download sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION: $json"
    dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
    [[ -d $dir/config/crd/standard ]] || die "no config/crd/standard in gateway-api $GATEWAY_API_VERSION ($json)"
    rm -rf "$tmp" && mkdir -p "$tmp"
    cp "$dir"/config/crd/standard/*.yaml "$tmp/"
    rm -f "$tmp/kustomization.yaml"
    chmod u+w "$tmp"/*.yaml
    touch "$tmp/.complete"
    rm -rf "$GATEWAY_CRDS" && mv "$tmp" "$GATEWAY_CRDS"
    log "Gateway API $GATEWAY_API_VERSION standard CRDs in $GATEWAY_CRDS"
}

cm_install() {
    local t0=$SECONDS
    do_install # kube.sh: kubectl (cached, so only checks)
    grep -qE "^\s*(require )?github.com/cert-manager/cert-manager $CERT_MANAGER_VERSION\s*(//.*)?$" \
        "$KUBE_MODULES/cert-manager/go.mod" ||
        die "e2e/env/kube/cert-manager/go.mod does not pin cert-manager $CERT_MANAGER_VERSION"
    cm_build
    cm_crds
    gateway_crds
    log "certmanager install done in $((SECONDS - t0))s"
}

# ------------------------------------------------------------------------------------------
# start
# ------------------------------------------------------------------------------------------

# env_value <service> <KEY>: a value from another service's env file (empty when absent).
env_value() {
    local file="$TESTENV_STATE/$1.env"
    [[ -f $file ]] && sed -n "s/^$2=//p" "$file" | tail -n 1
}

# wait_cluster <service> <KEY>: wait (bounded) until <service>.env names a kubeconfig whose
# apiserver is ready; prints the kubeconfig.
wait_cluster() {
    local service=$1 key=$2 deadline=$((SECONDS + CLUSTER_WAIT)) kc
    while :; do
        kc=$(env_value "$service" "$key")
        if [[ -n $kc && -f $kc ]] && "$KUBECTL" --kubeconfig "$kc" --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
            echo "$kc"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            if [[ -z $kc ]]; then
                die "the $service cluster is not up: no $key in $TESTENV_STATE/$service.env after ${CLUSTER_WAIT}s (start it first: e2e/env/$service.sh start)"
            fi
            die "the $service cluster's apiserver ($kc) is not ready after ${CLUSTER_WAIT}s"
        fi
        sleep 1
    done
}

# apply_crds <kubeconfig> <dir...>: server-side apply, then wait for every CRD to be Established.
apply_crds() {
    local kc=$1 out crds
    shift
    local args=()
    for dir in "$@"; do args+=(-f "$dir"); done
    out=$("$KUBECTL" --kubeconfig "$kc" --request-timeout=30s apply --server-side --force-conflicts \
        --field-manager=tidings-testenv "${args[@]}" -o name) || die "applying the CRDs to $kc failed"
    crds=$(grep '^customresourcedefinition' <<<"$out") || die "no CRDs applied to $kc"
    # shellcheck disable=SC2086 # one argument per CRD
    "$KUBECTL" --kubeconfig "$kc" wait --for=condition=Established --timeout=60s $crds >/dev/null ||
        die "the CRDs did not become Established in $kc"
    log "$(wc -l <<<"$crds") CRDs Established in $kc"
}

# controller_up: wait (bounded) for the controller's metrics endpoint; fail at once if it exits.
controller_up() {
    local deadline=$((SECONDS + 60)) logfile="$TESTENV_LOGS/certmanager.log"
    until curl -sf --max-time 3 "http://127.0.0.1:$CM_METRICS_PORT/metrics" >/dev/null 2>&1; do
        if ! pid_alive certmanager || ((SECONDS >= deadline)); then
            tail -n 30 "$logfile" >&2 || true
            die "cert-manager's controller did not come up (exited, or no metrics within 60s); see $logfile"
        fi
        sleep 1
    done
}

cm_start() {
    cm_install
    cm_stop
    trap 'rc=$?; if ((rc)); then log "certmanager start failed; stopping what was started"; cm_stop; fi' EXIT
    local t0=$SECONDS node_kc kube_kc
    log "waiting (at most ${CLUSTER_WAIT}s) for the node and kube clusters"
    node_kc=$(wait_cluster node TIDINGS_TEST_NODE_KUBECONFIG)
    kube_kc=$(wait_cluster kube TIDINGS_TEST_KUBECONFIG)

    apply_crds "$node_kc" "$CM_CRDS" "$GATEWAY_CRDS"
    apply_crds "$kube_kc" "$CM_CRDS" "$GATEWAY_CRDS"

    ! port_open 127.0.0.1 "$CM_METRICS_PORT" || die "port $CM_METRICS_PORT on 127.0.0.1 is already in use"
    [[ ! -f $TESTENV_LOGS/certmanager.log ]] || mv -f "$TESTENV_LOGS/certmanager.log" "$TESTENV_LOGS/certmanager.log.prev"
    log "starting cert-manager controller $CERT_MANAGER_VERSION against the node cluster"
    start_bg certmanager "$TESTENV_LOGS/certmanager.log" "$CM_BIN/cert-manager-controller" \
        --kubeconfig="$node_kc" --leader-elect=false \
        --cluster-resource-namespace="$CM_CLUSTER_RESOURCE_NAMESPACE" \
        --metrics-listen-address="127.0.0.1:$CM_METRICS_PORT" --v=2
    controller_up

    write_env certmanager \
        "TIDINGS_TEST_CERT_MANAGER_VERSION=$CERT_MANAGER_VERSION" \
        "TIDINGS_TEST_GATEWAY_API_VERSION=$GATEWAY_API_VERSION" \
        "TIDINGS_TEST_CERT_MANAGER_METRICS=127.0.0.1:$CM_METRICS_PORT" \
        "TIDINGS_TEST_CERT_MANAGER_KUBECONFIG=$node_kc" \
        "TIDINGS_TEST_CERT_MANAGER_CLUSTER_RESOURCE_NAMESPACE=$CM_CLUSTER_RESOURCE_NAMESPACE"
    log "cert-manager $CERT_MANAGER_VERSION is up in $((SECONDS - t0))s (Gateway API $GATEWAY_API_VERSION CRDs in both clusters)"
    trap - EXIT
}

# ------------------------------------------------------------------------------------------
# stop
# ------------------------------------------------------------------------------------------

cm_stop() {
    if pid_alive certmanager; then
        log "stopping certmanager"
    fi
    stop_bg certmanager 20
    rm -f "$TESTENV_STATE/certmanager.env"
}

case "${1:-}" in
install) cm_install ;;
start) cm_start ;;
stop) cm_stop ;;
*)
    echo "usage: $0 install|start|stop" >&2
    exit 2
    ;;
esac
