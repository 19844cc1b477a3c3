#!/usr/bin/env bash
# Kafka for the tests: a single KRaft node (broker + controller in one JVM).
#
#   kafka.sh install   fetch the broker's jars from Maven Central into
#                      $TESTENV_CACHE/kafka/<version>/libs (skipped when present)
#   kafka.sh start     format a fresh data dir, start the broker, wait until it answers
#                      a metadata request, write $TESTENV_STATE/kafka.env
#                      (PLAINTEXT listeners, and an SSL one with the test CA's
#                      certificate from tls-ca.sh: TIDINGS_TEST_KAFKA_SSL_BOOTSTRAP,
#                      TIDINGS_TEST_TLS_CA_FILE)
#   kafka.sh stop      stop it (safe when not running)
#   kafka.sh restart [down_s]
#                      SIGTERM the running broker, stay down down_s seconds (default 0),
#                      start it again on the same data dir, wait until it answers (for
#                      fault tests; the topics and offsets survive; the configuration
#                      is written afresh from kafka/server.properties)
#
# Needs Java 17+ and Maven. Version: $TIDINGS_KAFKA_VERSION (default below).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$TESTENV_LIB_DIR/tls-ca.sh"

KAFKA_VERSION="${TIDINGS_KAFKA_VERSION:-4.4.0}"
KAFKA_PORT=19092
KAFKA_CONTROLLER_PORT=19093
KAFKA_POD_PORT=19094  # on the pod bridge, when podnet.sh made it
KAFKA_SSL_PORT=19095  # TLS with the test CA's certificate (tls-ca.sh)
KAFKA_POD_SSL_PORT=19096
KAFKA_HOME="$TESTENV_CACHE/kafka/$KAFKA_VERSION"
KAFKA_SRC="$TESTENV_LIB_DIR/kafka"
KAFKA_STATE="$TESTENV_STATE/kafka"
KAFKA_LOG="$TESTENV_LOGS/kafka.log"
JAVA="${JAVA:-java}"

kafka_install() {
    maven_fetch_jars kafka "$KAFKA_VERSION" "$KAFKA_SRC" kafka.version "$KAFKA_HOME" "kafka_2.13-$KAFKA_VERSION.jar"
}

# kafka_tool <main class> <args...>: run a Kafka command-line tool quietly.
kafka_tool() {
    timeout 60 "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2-tools.xml" \
        -cp "$KAFKA_HOME/libs/*" "$@"
}

# A real request: list the topics (metadata from the broker), bounded in time.
kafka_healthy() {
    port_open 127.0.0.1 "$KAFKA_PORT" || return 1
    kafka_tool org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list
}

kafka_wait() {
    local deadline=$((SECONDS + 90))
    until kafka_healthy >/dev/null 2>&1; do
        if ! pid_alive kafka; then
            tail -n 40 "$KAFKA_LOG" >&2 || true
            die "kafka exited during start-up, see $KAFKA_LOG"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 40 "$KAFKA_LOG" >&2 || true
            die "kafka did not become healthy within 90s, see $KAFKA_LOG"
        fi
        sleep 1
    done
}

# kafka_configure: write $KAFKA_STATE/server.properties from kafka/server.properties.
kafka_configure() {
    tls_ca_make
    sed -e "s|@BROKER_PORT@|$KAFKA_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@SSL_PORT@|$KAFKA_SSL_PORT|g" \
        -e "s|@TLS_DIR@|$TESTENV_TLS|g" \
        -e "s|@DATA_DIR@|$KAFKA_STATE/data|g" \
        "$KAFKA_SRC/server.properties" >"$KAFKA_STATE/server.properties"
    if pod_bridge_up; then
        # Pods of the real node (node.sh) reach the broker on the bridge's address;
        # later keys win in a properties file.
        local pods="PODS://$POD_GATEWAY_IP:$KAFKA_POD_PORT"
        local ssl="SSL://127.0.0.1:$KAFKA_SSL_PORT,PODS_SSL://$POD_GATEWAY_IP:$KAFKA_POD_SSL_PORT"
        {
            echo "listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,$pods,$ssl"
            echo "advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,$pods,$ssl"
            echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PODS:PLAINTEXT,SSL:SSL,PODS_SSL:SSL"
        } >>"$KAFKA_STATE/server.properties"
    fi
}

# kafka_write_env: the addresses the tests read.
kafka_write_env() {
    local env=("TIDINGS_TEST_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
        "TIDINGS_TEST_KAFKA_SSL_BOOTSTRAP=127.0.0.1:$KAFKA_SSL_PORT"
        "TIDINGS_TEST_TLS_CA_FILE=$TESTENV_TLS/ca.crt")
    ! grep -q '^listeners=.*PODS://' "$KAFKA_STATE/server.properties" ||
        env+=("TIDINGS_TEST_KAFKA_POD_BOOTSTRAP=$POD_GATEWAY_IP:$KAFKA_POD_PORT"
            "TIDINGS_TEST_KAFKA_POD_SSL_BOOTSTRAP=$POD_GATEWAY_IP:$KAFKA_POD_SSL_PORT")
    write_env kafka "${env[@]}"
}

# kafka_launch: start the broker on the formatted data dir in $KAFKA_STATE.
kafka_launch() {
    log "starting kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
    start_bg kafka "$KAFKA_LOG" "$JAVA" \
        -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.xml" \
        -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$KAFKA_STATE/server.properties"
}

kafka_start() {
    local t0=$SECONDS
    [[ -f $KAFKA_HOME/libs/.complete ]] || kafka_install
    if pid_alive kafka; then
        log "kafka already running (pid $(cat "$TESTENV_RUN/kafka.pid"))"
    else
        for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SSL_PORT"; do
            ! port_open 127.0.0.1 "$port" || die "port $port is taken by another process"
        done
        # A fresh, throwaway data directory on every start.
        rm -rf "$KAFKA_STATE"
        mkdir -p "$KAFKA_STATE/data"
        kafka_configure
        # A cluster id is a base64url-encoded 16-byte UUID without padding. It may start
        # with "-", so it is passed as --cluster-id=ID, never as a separate argument.
        local cluster_id
        cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        : >"$KAFKA_LOG"
        if ! kafka_tool kafka.tools.StorageTool format \
            --cluster-id="$cluster_id" --config "$KAFKA_STATE/server.properties" \
            >>"$KAFKA_LOG" 2>&1; then
            tail -n 30 "$KAFKA_LOG" >&2
            die "formatting kafka storage failed, see $KAFKA_LOG"
        fi
        kafka_launch
    fi
    kafka_wait
    kafka_write_env
    log "kafka healthy in $((SECONDS - t0))s"
}

kafka_stop() {
    if pid_alive kafka; then
        log "stopping kafka"
    fi
    stop_bg kafka 30
    rm -f "$TESTENV_STATE/kafka.env"
}

# kafka_restart [down_s]: stop and start again on the same data (never wipes it).
kafka_restart() {
    local down=${1:-0} t0=$SECONDS
    [[ -f $KAFKA_STATE/server.properties ]] || die "kafka has no data dir to restart on; use start"
    log "stopping kafka (data kept)"
    stop_bg kafka 30
    sleep "$down"
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SSL_PORT"; do
        ! port_open 127.0.0.1 "$port" || die "port $port is taken by another process"
    done
    kafka_configure
    kafka_launch
    kafka_wait
    kafka_write_env
    log "kafka restarted, healthy after $((SECONDS - t0))s"
}

case "${1:-}" in
    install) kafka_install ;;
    start) kafka_start ;;
    stop) kafka_stop ;;
    restart) kafka_restart "${2:-0}" ;;
    *) die "usage: $0 install|start|stop|restart [down_s]" ;;
esac
