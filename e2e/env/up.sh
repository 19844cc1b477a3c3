#!/usr/bin/env bash
# Install (cached) and start every service the tests need; write their addresses.
#
#   e2e/env/up.sh [service...]     default: podnet postgres kafka cassandra seaweedfs kube node certmanager
#
# Addresses land in $TESTENV_STATE/<service>.env (default .testenv/), which the tests read.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

services=("$@")
((${#services[@]})) || services=(podnet postgres kafka cassandra seaweedfs kube node certmanager)

started=$SECONDS
for service in "${services[@]}"; do
    t0=$SECONDS
    log "installing $service"
    bash "$TESTENV_LIB_DIR/$service.sh" install
    log "$service installed in $((SECONDS - t0))s"
done

# The pod network first: the host services listen on its bridge too when it is up.
# Services that run on top of the clusters (certmanager) last, once the others are up.
parallel=()
last=()
for service in "${services[@]}"; do
    if [[ $service == podnet ]]; then
        bash "$TESTENV_LIB_DIR/podnet.sh" start || die "could not start podnet"
    elif [[ $service == certmanager ]]; then
        last+=("$service")
    else
        parallel+=("$service")
    fi
done
# Then the rest in parallel: Cassandra and the control planes take the longest.
services=("${parallel[@]}")
declare -A pids
for service in "${services[@]}"; do
    bash "$TESTENV_LIB_DIR/$service.sh" start &
    pids[$service]=$!
done
failed=()
for service in "${services[@]}"; do
    if ! wait "${pids[$service]}"; then failed+=("$service"); fi
done
if ((${#failed[@]})); then
    die "could not start: ${failed[*]} (logs in $TESTENV_LOGS)"
fi
for service in "${last[@]}"; do
    bash "$TESTENV_LIB_DIR/$service.sh" start || die "could not start $service (logs in $TESTENV_LOGS)"
done
log "test environment up in $((SECONDS - started))s; addresses in $TESTENV_STATE/*.env"
