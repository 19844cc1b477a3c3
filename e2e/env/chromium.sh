#!/usr/bin/env bash
# Debian's Chromium for the web client's browser tests (tests/web/), installed only when
# /usr/bin/chromium is missing (idempotent; the tests never download a browser of their own).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -x /usr/bin/chromium ]]; then
    exit 0
fi
((EUID == 0)) || die "/usr/bin/chromium is missing and we are not root: apt-get install chromium"
t0=$SECONDS
export DEBIAN_FRONTEND=noninteractive
log "apt-get install chromium"
apt-get update -q >/dev/null
apt-get install -y -q chromium fonts-dejavu-core >/dev/null
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium still missing after apt-get install chromium"
log "chromium installed in $((SECONDS - t0))s ($(/usr/bin/chromium --version 2>/dev/null || echo '?'))"
