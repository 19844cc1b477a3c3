#!/usr/bin/env bash
# Cassandra for the tests: one node, run straight from cassandra-all's jars.
#
#   cassandra.sh install   fetch cassandra-all and its dependencies from Maven Central into
#                          $TESTENV_CACHE/cassandra/<version>/libs (skipped when present)
#   cassandra.sh start     start a node on a fresh data dir, wait until it answers a CQL
#                          query, write $TESTENV_STATE/cassandra.env (the native port also
#                          takes TLS clients, with the test CA's certificate from
#                          tls-ca.sh: TIDINGS_TEST_TLS_CA_FILE)
#   cassandra.sh stop      stop it (safe when not running)
#   cassandra.sh restart [down_s]
#                          SIGTERM the running node, stay down down_s seconds (default 0),
#                          start it again on the same data dir, wait until it answers a
#                          CQL query (for fault tests; keyspaces and data survive)
#   cassandra.sh nodetool ARGS...
#                          run nodetool against the node's JMX port (127.0.0.1:17199, local
#                          only, no auth: jvm.options), e.g. `nodetool snapshot -t T ks`;
#                          scripts/backup.sh and restore.sh use it as $NODETOOL in the tests
#
# Needs Java 17 and Maven. Version: $TIDINGS_CASSANDRA_VERSION (default below).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$TESTENV_LIB_DIR/tls-ca.sh"

CASSANDRA_VERSION="${TIDINGS_CASSANDRA_VERSION:-5.0.9}"
CASSANDRA_NATIVE_PORT=19042
CASSANDRA_STORAGE_PORT=17000
CASSANDRA_JMX_PORT=17199 # as -Dcassandra.jmx.local.port in cassandra/jvm.options
CASSANDRA_HOME="$TESTENV_CACHE/cassandra/$CASSANDRA_VERSION"
CASSANDRA_SRC="$TESTENV_LIB_DIR/cassandra"
CASSANDRA_STATE="$TESTENV_STATE/cassandra"
CASSANDRA_LOG="$TESTENV_LOGS/cassandra.log"
CASSANDRA_START_TIMEOUT="${TIDINGS_CASSANDRA_START_TIMEOUT:-180}"
JAVA="${JAVA:-java}"
PYTHON="${PYTHON:-python3}"

cassandra_install() {
    maven_fetch_jars cassandra "$CASSANDRA_VERSION" "$CASSANDRA_SRC" cassandra.version "$CASSANDRA_HOME" "cassandra-all-$CASSANDRA_VERSION.jar"
}

cassandra_healthy() {
    port_open 127.0.0.1 "$CASSANDRA_NATIVE_PORT" &&
        "$PYTHON" "$CASSANDRA_SRC/cql_ping.py" 127.0.0.1 "$CASSANDRA_NATIVE_PORT"
}

cassandra_wait() {
    local deadline=$((SECONDS + CASSANDRA_START_TIMEOUT))
    until cassandra_healthy >/dev/null 2>&1; do
        if ! pid_alive cassandra; then
            tail -n 40 "$CASSANDRA_LOG" >&2 || true
            die "cassandra exited during start-up, see $CASSANDRA_LOG"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 40 "$CASSANDRA_LOG" >&2 || true
            die "cassandra did not become healthy within ${CASSANDRA_START_TIMEOUT}s, see $CASSANDRA_LOG"
        fi
        sleep 1
    done
}

# cassandra_launch: start the node on the data dir in $CASSANDRA_STATE.
cassandra_launch() {
    local -a jvm_opts
    mapfile -t jvm_opts < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$CASSANDRA_SRC/jvm.options" | grep -v '^$')
    # jamm measures object sizes (memtables, caches) as a Java agent, as cassandra-env.sh does.
    local jamm
    jamm=$(find "$CASSANDRA_HOME/libs" -name 'jamm-*.jar' | head -n 1)
    [[ -n $jamm ]] && jvm_opts+=("-javaagent:$jamm")
    log "starting cassandra $CASSANDRA_VERSION on 127.0.0.1:$CASSANDRA_NATIVE_PORT"
    start_bg cassandra "$CASSANDRA_LOG" "$JAVA" "${jvm_opts[@]}" \
        -Dcassandra.config="file://$CASSANDRA_STATE/cassandra.yaml" \
        -Dcassandra.storagedir="$CASSANDRA_STATE" \
        -Dcassandra.logdir="$CASSANDRA_STATE/logs" \
        -Dlogback.configurationFile="$CASSANDRA_SRC/logback.xml" \
        -cp "$CASSANDRA_HOME/libs/*" org.apache.cassandra.service.CassandraDaemon
}

cassandra_start() {
    local t0=$SECONDS
    [[ -f $CASSANDRA_HOME/libs/.complete ]] || cassandra_install
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for the CQL health check)"
    if pid_alive cassandra; then
        log "cassandra already running (pid $(cat "$TESTENV_RUN/cassandra.pid"))"
    else
        for port in "$CASSANDRA_NATIVE_PORT" "$CASSANDRA_STORAGE_PORT"; do
            ! port_open 127.0.0.1 "$port" || die "port $port is taken by another process"
        done
        # A fresh, throwaway node on every start.
        rm -rf "$CASSANDRA_STATE"
        mkdir -p "$CASSANDRA_STATE"/{data,commitlog,saved_caches,hints,cdc_raw,logs}
        tls_ca_make
        sed -e "s|@STATE_DIR@|$CASSANDRA_STATE|g" \
            -e "s|@TLS_DIR@|$TESTENV_TLS|g" \
            -e "s|@NATIVE_PORT@|$CASSANDRA_NATIVE_PORT|g" \
            -e "s|@STORAGE_PORT@|$CASSANDRA_STORAGE_PORT|g" \
            "$CASSANDRA_SRC/cassandra.yaml" >"$CASSANDRA_STATE/cassandra.yaml"
        if pod_bridge_up; then
            # Pods of the real node (node.sh) connect on the bridge's address: listen on all
            # addresses, and name loopback as the node's address for host clients.
            sed -i -e 's|^rpc_address: .*|rpc_address: 0.0.0.0\nbroadcast_rpc_address: 127.0.0.1|' \
                "$CASSANDRA_STATE/cassandra.yaml"
        fi
        : >"$CASSANDRA_LOG"
        cassandra_launch
    fi
    cassandra_wait
    local env=(TIDINGS_TEST_CASSANDRA_HOSTS=127.0.0.1 "TIDINGS_TEST_CASSANDRA_PORT=$CASSANDRA_NATIVE_PORT"
        "TIDINGS_TEST_TLS_CA_FILE=$TESTENV_TLS/ca.crt")
    ! grep -q '^rpc_address: 0.0.0.0' "$CASSANDRA_STATE/cassandra.yaml" ||
        env+=("TIDINGS_TEST_CASSANDRA_POD_HOST=$POD_GATEWAY_IP")
    write_env cassandra "${env[@]}"
    log "cassandra healthy in $((SECONDS - t0))s ($("$PYTHON" "$CASSANDRA_SRC/cql_ping.py" 127.0.0.1 "$CASSANDRA_NATIVE_PORT"))"
}

cassandra_stop() {
    if pid_alive cassandra; then
        log "stopping cassandra"
    fi
    stop_bg cassandra 30
    rm -f "$TESTENV_STATE/cassandra.env"
}

# cassandra_restart [down_s]: stop and start again on the same data (never wipes it).
cassandra_restart() {
    local down=${1:-0} t0=$SECONDS
    [[ -f $CASSANDRA_STATE/cassandra.yaml ]] || die "cassandra has no data dir to restart on; use start"
    log "stopping cassandra (data kept)"
    stop_bg cassandra 30
    sleep "$down"
    for port in "$CASSANDRA_NATIVE_PORT" "$CASSANDRA_STORAGE_PORT"; do
        ! port_open 127.0.0.1 "$port" || die "port $port is taken by another process"
    done
    cassandra_launch
    cassandra_wait
    log "cassandra restarted, healthy after $((SECONDS - t0))s"
}

# cassandra_nodetool ARGS...: nodetool (org.apache.cassandra.tools.NodeTool from the same
# jars) against the running node. It needs the server's module options to start on Java 17.
cassandra_nodetool() {
    local -a opens
    mapfile -t opens < <(grep -E '^--add-(exports|opens)=' "$CASSANDRA_SRC/jvm.options")
    exec "$JAVA" "${opens[@]}" -Xmx256m -Dlogback.configurationFile="$CASSANDRA_SRC/logback.xml" \
        -cp "$CASSANDRA_HOME/libs/*" org.apache.cassandra.tools.NodeTool \
        -h 127.0.0.1 -p "$CASSANDRA_JMX_PORT" "$@"
}

case "${1:-}" in
    install) cassandra_install ;;
    start) cassandra_start ;;
    stop) cassandra_stop ;;
    restart) cassandra_restart "${2:-0}" ;;
    nodetool)
        shift
        cassandra_nodetool "$@"
        ;;
    *) die "usage: $0 install|start|stop|restart [down_s]|nodetool ARGS..." ;;
esac
