#!/usr/bin/env bash
# Install (cached) and start every service the tests need; write their addresses.
#
#   e2e/env/up.sh [service...]     default: postgres kafka cassandra kube
#
# Addresses land in $TESTENV_STATE/<service>.env (default .testenv/), which the tests read.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

services=("$@")
((${#services[@]})) || services=(postgres kafka cassandra kube)

started=$SECONDS
for service in "${services[@]}"; do
    t0=$SECONDS
    log "installing $service"
    bash "$TESTENV_LIB_DIR/$service.sh" install
    log "$service installed in $((SECONDS - t0))s"
done

# Start in parallel: Cassandra and the control plane take the longest to become healthy.
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
log "test environment up in $((SECONDS - started))s; addresses in $TESTENV_STATE/*.env"
