#!/usr/bin/env bash
# Centrifugo, the open real-time messaging server the benchmarks compare against
# (docs/benchmarks.md). Built from the Go module proxy, cached by version under
# $TESTENV_CACHE/centrifugo/<version>/bin/centrifugo. Not started here: `tidings bench`
# starts it with its own configuration for each measurement.
#
#   centrifugo.sh install   build github.com/centrifugal/centrifugo/v6 (cached; ~5 min cold)
#   centrifugo.sh start     nothing to start (the benchmark does it)
#   centrifugo.sh stop      nothing to stop
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CENTRIFUGO_VERSION=v6.9.1
CENTRIFUGO_HOME="$TESTENV_CACHE/centrifugo/$CENTRIFUGO_VERSION"
CENTRIFUGO_BIN="$CENTRIFUGO_HOME/bin/centrifugo"

centrifugo_install() {
    local t0=$SECONDS install_log="$TESTENV_LOGS/centrifugo-install.log"
    if [[ -x $CENTRIFUGO_BIN ]]; then
        log "centrifugo $CENTRIFUGO_VERSION already in $CENTRIFUGO_BIN"
        return 0
    fi
    command -v go >/dev/null || die "go is not installed (Go >= 1.24 needed to build Centrifugo)"
    export GOMODCACHE="$TESTENV_CACHE/go/mod" GOCACHE="$TESTENV_CACHE/go/build"
    # `go install module@version` resolves the module's own go.mod through the proxy.
    export GOTOOLCHAIN=local GOFLAGS="-p=2 -mod=mod -buildvcs=false" CGO_ENABLED=0
    export GOBIN="$CENTRIFUGO_HOME/bin.tmp"
    rm -rf "$GOBIN" && mkdir -p "$GOBIN"
    log "building centrifugo $CENTRIFUGO_VERSION from the Go module proxy"
    if ! go install -trimpath \
        -ldflags "-s -w -X github.com/centrifugal/centrifugo/v6/internal/build.Version=${CENTRIFUGO_VERSION#v}" \
        "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION" >"$install_log" 2>&1; then
        tail -n 30 "$install_log" >&2
        die "could not build centrifugo, see $install_log"
    fi
    rm -rf "$CENTRIFUGO_HOME/bin" && mv "$GOBIN" "$CENTRIFUGO_HOME/bin"
    log "centrifugo $CENTRIFUGO_VERSION built in $((SECONDS - t0))s"
}

case "${1:-}" in
    install) centrifugo_install ;;
    start | stop) : ;;
    *) die "usage: $0 install|start|stop" ;;
esac
