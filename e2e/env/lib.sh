# shellcheck shell=bash
# Shared helpers for the test-environment scripts in e2e/env/.
#
# Contract for every service script e2e/env/<service>.sh:
#   <service>.sh install   download/build into $TESTENV_CACHE (idempotent, cached by version)
#   <service>.sh start     start it, wait until healthy, write $TESTENV_STATE/<service>.env
#   <service>.sh stop      stop it, leave no process behind (safe when not running)
# Logs go to $TESTENV_STATE/logs/<service>.log; pid files to $TESTENV_STATE/run/.

set -euo pipefail

TESTENV_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TESTENV_LIB_DIR/../.." && pwd)"
TESTENV_CACHE="${TIDINGS_TESTENV_CACHE:-$HOME/.cache/tidings-testenv}"
TESTENV_STATE="${TIDINGS_TESTENV_STATE:-$REPO_ROOT/.testenv}"
TESTENV_LOGS="$TESTENV_STATE/logs"
TESTENV_RUN="$TESTENV_STATE/run"
mkdir -p "$TESTENV_CACHE" "$TESTENV_STATE" "$TESTENV_LOGS" "$TESTENV_RUN"

log() { printf '[testenv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# wait_until <timeout_s> <what> <logfile> <command...>: poll a command until it succeeds.
wait_until() {
    local timeout=$1 what=$2 logfile=$3
    shift 3
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "$what did not become healthy within ${timeout}s; last lines of $logfile:"
            tail -n 30 "$logfile" >&2 || true
            die "$what failed to start, see $logfile"
        fi
        sleep 1
    done
}

# port_open <host> <port>: true when a TCP connect succeeds.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# start_bg <name> <logfile> <command...>: run a daemon in its own session, record its pid.
start_bg() {
    local name=$1 logfile=$2
    shift 2
    setsid "$@" >>"$logfile" 2>&1 </dev/null &
    echo $! >"$TESTENV_RUN/$name.pid"
}

# pid_alive <name>: true when the recorded process still runs.
pid_alive() {
    local pidfile="$TESTENV_RUN/$1.pid"
    [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# stop_bg <name> [grace_s]: SIGTERM the process group, SIGKILL after the grace period.
stop_bg() {
    local name=$1 grace=${2:-20} pidfile="$TESTENV_RUN/$1.pid" pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + grace))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# write_env <service> KEY=VALUE...: the addresses a service exposes to the tests.
write_env() {
    local service=$1
    shift
    printf '%s\n' "$@" >"$TESTENV_STATE/$service.env"
}

# maven_fetch_jars <name> <version> <pom dir> <version property> <home> <main jar>:
# copy an artifact and its runtime dependencies into <home>/libs (cached: a finished
# fetch leaves libs/.complete; Maven's repository is shared in $TESTENV_CACHE/m2).
maven_fetch_jars() {
    local name=$1 version=$2 pom_dir=$3 property=$4 home=$5 main_jar=$6
    local t0=$SECONDS install_log="$TESTENV_LOGS/$name-install.log"
    if [[ -f $home/libs/.complete ]]; then
        log "$name $version already in $home"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
    command -v "${JAVA:-java}" >/dev/null || die "java not found: install a JDK 17"
    log "fetching $name $version jars with Maven"
    local tmp="$home/libs.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if ! mvn -B -q -f "$pom_dir/pom.xml" \
        -Dmaven.repo.local="$TESTENV_CACHE/m2" \
        -D"$property=$version" \
        dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$install_log" 2>&1; then
        tail -n 30 "$install_log" >&2
        rm -rf "$tmp"
        die "could not fetch $name $version, see $install_log"
    fi
    [[ -f $tmp/$main_jar ]] || die "$main_jar missing after fetch"
    touch "$tmp/.complete"
    rm -rf "$home/libs"
    mv "$tmp" "$home/libs"
    log "$name $version installed in $((SECONDS - t0))s ($(find "$home/libs" -name '*.jar' | wc -l) jars)"
}

# --- the real node's pod network (e2e/env/podnet.sh, node.sh) -----------------------------
# Pods of the real single-node Kubernetes hang off this bridge. The host services (Kafka,
# Cassandra, PostgreSQL) also listen on its gateway address when it is up, so pods reach them.
POD_BRIDGE=tidings0
POD_GATEWAY_IP=10.245.0.1
POD_SUBNET=10.245.0.0/24

# pod_bridge_up: true when podnet.sh has made the bridge with its gateway address.
pod_bridge_up() { ip -4 addr show dev "$POD_BRIDGE" 2>/dev/null | grep -q "inet $POD_GATEWAY_IP/"; }
