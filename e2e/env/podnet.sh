#!/usr/bin/env bash
# The real node's pod network: a Linux bridge with the pods' gateway address, made before the
# host services start so that they can listen on that address too (pods reach Kafka,
# Cassandra and PostgreSQL there). The CNI bridge plugin of node.sh attaches pods to it.
#
#   podnet.sh install   nothing to install (iproute2 is part of the base system)
#   podnet.sh start     create the bridge, enable forwarding; writes $TESTENV_STATE/podnet.env
#   podnet.sh stop      delete the bridge (safe when it is not there)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

podnet_start() {
    command -v ip >/dev/null || die "the ip command (iproute2) is needed for the pod network"
    if ! ip link show "$POD_BRIDGE" >/dev/null 2>&1; then
        ip link add "$POD_BRIDGE" type bridge || die "could not create bridge $POD_BRIDGE (root needed)"
    fi
    pod_bridge_up || ip addr add "$POD_GATEWAY_IP/${POD_SUBNET#*/}" dev "$POD_BRIDGE"
    ip link set "$POD_BRIDGE" up
    # Pods reach services through the host; Service traffic between pods on the bridge
    # must pass iptables (kube-proxy's rules) too.
    sysctl -qw net.ipv4.ip_forward=1
    [[ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
        sysctl -qw net.bridge.bridge-nf-call-iptables=1
    write_env podnet "TIDINGS_TEST_POD_GATEWAY_IP=$POD_GATEWAY_IP" "TIDINGS_TEST_POD_SUBNET=$POD_SUBNET"
    log "pod network: bridge $POD_BRIDGE with $POD_GATEWAY_IP (pods in $POD_SUBNET)"
}

podnet_stop() {
    if ip link show "$POD_BRIDGE" >/dev/null 2>&1; then
        log "deleting bridge $POD_BRIDGE"
        ip link del "$POD_BRIDGE" || true
    fi
    rm -f "$TESTENV_STATE/podnet.env"
}

case "${1:-}" in
install) ;;
start) podnet_start ;;
stop) podnet_stop ;;
*)
    echo "usage: $0 install|start|stop" >&2
    exit 2
    ;;
esac
