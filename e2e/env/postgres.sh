#!/usr/bin/env bash
# PostgreSQL for the tests: a throwaway cluster from Debian's server binaries.
#
#   postgres.sh install   apt-get install the server when initdb is missing
#   postgres.sh start     initdb a fresh cluster under $TESTENV_STATE/postgres, start it on
#                         127.0.0.1:15432, create user/database tidings (password tidings),
#                         write $TESTENV_STATE/postgres.env
#   postgres.sh stop      fast shutdown (safe when not running)
#
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` system user
# (which the Debian package creates), or as $TIDINGS_POSTGRES_OS_USER.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT=15432
PG_STATE="$TESTENV_STATE/postgres"
PG_DATA="$PG_STATE/data"
PG_LOG="$TESTENV_LOGS/postgres.log"
PG_DB=tidings
PG_USER=tidings
PG_PASSWORD=tidings
PG_OS_USER="${TIDINGS_POSTGRES_OS_USER:-postgres}"

# The newest installed server's bin directory (Debian: /usr/lib/postgresql/<major>/bin).
pg_bindir() {
    local dir
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -rn); do
        [[ -x $dir/initdb && -x $dir/postgres ]] && { echo "$dir"; return 0; }
    done
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir
        return 0
    fi
    return 1
}

postgres_install() {
    local t0=$SECONDS bindir
    if bindir=$(pg_bindir); then
        log "postgres already installed ($("$bindir/postgres" --version))"
        return 0
    fi
    ((EUID == 0)) || die "PostgreSQL server is not installed and we are not root: apt-get install postgresql"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get install -y -q --no-install-recommends)
    # postgresql-common first, so that no default cluster gets created (and started) on 5432.
    if ! apt-cache show postgresql-common >/dev/null 2>&1 || ! "${apt[@]}" postgresql-common >/dev/null; then
        log "apt-get update"
        apt-get update -q >/dev/null
        "${apt[@]}" postgresql-common >/dev/null
    fi
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/tidings-testenv.conf
    log "apt-get install postgresql"
    "${apt[@]}" postgresql >/dev/null
    bindir=$(pg_bindir) || die "initdb still missing after apt-get install postgresql"
    log "postgres installed in $((SECONDS - t0))s ($("$bindir/postgres" --version))"
}

# AS_PG <command...>: run a command as the cluster's OS user (exec, no extra process).
AS_PG=()
if ((EUID == 0)); then
    AS_PG=(setpriv --reuid="$PG_OS_USER" --regid="$PG_OS_USER" --init-groups
        env HOME="$PG_STATE" USER="$PG_OS_USER" LOGNAME="$PG_OS_USER")
fi
as_pg() { "${AS_PG[@]}" "$@"; }

# The unix socket lives in the state dir unless that path is too long for a socket name.
pg_socket_dir() {
    local dir="$PG_STATE/run"
    if ((${#dir} + 20 > 100)); then
        dir="/tmp/tidings-testenv-pg-$PG_PORT"
    fi
    echo "$dir"
}

postgres_healthy() {
    local bindir=$1
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U postgres -t 2
}

postgres_start() {
    local t0=$SECONDS bindir sockdir
    bindir=$(pg_bindir) || postgres_install
    bindir=$(pg_bindir)
    sockdir=$(pg_socket_dir)
    if pid_alive postgres; then
        log "postgres already running (pid $(cat "$TESTENV_RUN/postgres.pid"))"
    else
        ! port_open 127.0.0.1 "$PG_PORT" || die "port $PG_PORT is taken by another process"
        if ((EUID == 0)); then
            id "$PG_OS_USER" >/dev/null 2>&1 || useradd --system --no-create-home \
                --shell /usr/sbin/nologin "$PG_OS_USER"
        fi
        # A fresh, throwaway cluster on every start.
        rm -rf "$PG_STATE" "$sockdir"
        mkdir -p "$PG_STATE" "$sockdir"
        ((EUID != 0)) || chown "$PG_OS_USER:" "$PG_STATE" "$sockdir"
        chmod 700 "$PG_STATE"
        as_pg test -w "$PG_STATE" ||
            die "$PG_OS_USER cannot write $PG_STATE (a parent directory is not searchable?)"
        : >"$PG_LOG"
        ((EUID != 0)) || chown "$PG_OS_USER:" "$PG_LOG"
        # Superuser `postgres` (trust on the unix socket only), password auth over TCP.
        if ! as_pg "$bindir/initdb" -D "$PG_DATA" -U postgres \
            -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 \
            --no-sync >>"$PG_LOG" 2>&1; then
            tail -n 30 "$PG_LOG" >&2
            die "initdb failed, see $PG_LOG"
        fi
        local listen=127.0.0.1
        if pod_bridge_up; then
            # Pods of the real node (node.sh) connect on the bridge's address, with a password.
            listen+=",$POD_GATEWAY_IP"
            echo "host all all $POD_SUBNET scram-sha-256" >>"$PG_DATA/pg_hba.conf"
        fi
        log "starting postgres $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
        # Durability is not needed for throwaway test data: no fsync, no full-page writes.
        start_bg postgres "$PG_LOG" "${AS_PG[@]}" "$bindir/postgres" -D "$PG_DATA" \
            -c listen_addresses="$listen" -c port="$PG_PORT" \
            -c unix_socket_directories="$sockdir" \
            -c max_connections=200 -c shared_buffers=128MB \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c log_min_messages=warning -c log_statement=none
    fi
    local deadline=$((SECONDS + 60))
    until postgres_healthy "$bindir"; do
        if ! pid_alive postgres; then
            tail -n 30 "$PG_LOG" >&2 || true
            die "postgres exited during start-up, see $PG_LOG"
        fi
        ((SECONDS < deadline)) || {
            tail -n 30 "$PG_LOG" >&2
            die "postgres did not become ready within 60s, see $PG_LOG"
        }
        sleep 0.5
    done
    # The user and database (CREATEDB: tests may make their own databases), then a real
    # query over TCP with the password the tests use.
    local psql=("$bindir/psql" -h "$sockdir" -p "$PG_PORT" -U postgres -d postgres -Atq
        -v ON_ERROR_STOP=1)
    if [[ -z $("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'") ]]; then
        "${psql[@]}" -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'" \
            >>"$PG_LOG" 2>&1 || die "could not create role $PG_USER, see $PG_LOG"
    fi
    if [[ -z $("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
        "${psql[@]}" -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >>"$PG_LOG" 2>&1 ||
            die "could not create database $PG_DB, see $PG_LOG"
    fi
    PGPASSWORD=$PG_PASSWORD "$bindir/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" \
        -Atq -c "SELECT 1" >/dev/null || die "postgres does not answer a query over TCP"
    local env=("TIDINGS_TEST_POSTGRES_URL=postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB")
    ! grep -q "^host all all $POD_SUBNET" "$PG_DATA/pg_hba.conf" 2>/dev/null ||
        env+=("TIDINGS_TEST_POSTGRES_POD_URL=postgresql+asyncpg://$PG_USER:$PG_PASSWORD@$POD_GATEWAY_IP:$PG_PORT/$PG_DB")
    write_env postgres "${env[@]}"
    log "postgres healthy in $((SECONDS - t0))s"
}

postgres_stop() {
    local bindir
    if pid_alive postgres; then
        log "stopping postgres"
        # Fast shutdown: disconnect clients instead of waiting for them (SIGTERM's smart mode).
        bindir=$(pg_bindir) && as_pg "$bindir/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 20 \
            >/dev/null 2>&1 || true
    fi
    stop_bg postgres 20
    rm -f "$TESTENV_STATE/postgres.env"
}

case "${1:-}" in
    install) postgres_install ;;
    start) postgres_start ;;
    stop) postgres_stop ;;
    *) die "usage: $0 install|start|stop" ;;
esac
