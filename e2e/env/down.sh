#!/usr/bin/env bash
# Stop every service of the test environment; leaves no process behind.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

services=("$@")
((${#services[@]})) || services=(certmanager node kube seaweedfs cassandra kafka postgres podnet)
status=0
for service in "${services[@]}"; do
    [[ -f "$TESTENV_LIB_DIR/$service.sh" ]] || continue
    bash "$TESTENV_LIB_DIR/$service.sh" stop || status=1
    rm -f "$TESTENV_STATE/$service.env"
done
exit $status
