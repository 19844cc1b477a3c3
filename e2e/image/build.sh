#!/usr/bin/env bash
# Build the Tidings image and the pod sandbox ("pause") image without a container daemon,
# as OCI image archives for `ctr -n k8s.io images import` (containerd 1.6, what the tests
# use; `kind load image-archive` imports the same way). Needs root (debootstrap, chroot,
# overlay mounts).
#
#   e2e/image/build.sh tidings [--name REPO] [--tag TAG]... [--out DIR]
#       REPO default docker.io/tidings/tidings, TAG default dev (repeatable: one archive per
#       tag, all sharing the same layers; each tag's config carries the tag as a label and
#       in TIDINGS_IMAGE_TAG, so every tag has its own digest).
#   e2e/image/build.sh pause [--name REPO] [--tag TAG] [--out DIR]
#       REPO default registry.k8s.io/pause, TAG default 3.6: containerd 1.6's default
#       sandbox_image, which the kubelet's node then never has to pull.
#
# Archives land in DIR (default $TIDINGS_TESTENV_STATE/images, i.e. .testenv/images) as
# <last part of REPO>-<TAG>.tar; their paths are printed on stdout, one a line.
#
# The Tidings image is the one the repository's Dockerfile describes (same layout, same
# user, same paths, same entrypoint), built from Debian bookworm's own python3 (3.11)
# instead of python:3.11-slim-bookworm, in three layers:
#   base  debootstrap --variant=minbase bookworm + python3, python3-venv, ca-certificates,
#         the user tidings (10001:10001); cached by $BASE_VERSION (cold: ~2-3 minutes)
#   deps  the virtualenv /opt/tidings with the project's dependencies, at the versions of
#         the project's .venv (e2e/image/pins.py); cached by that pinned list
#   app   the project's wheel installed into it, /usr/local/bin/tidings; cached by a hash
#         of the sources (so a second tag of the same tree costs only seconds)
# Caches: $TIDINGS_TESTENV_CACHE/image (default ~/.cache/tidings-testenv/image).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${TIDINGS_TESTENV_CACHE:-$HOME/.cache/tidings-testenv}/image"
STATE="${TIDINGS_TESTENV_STATE:-$REPO_ROOT/.testenv}"
# Bump to rebuild the cached base rootfs (e.g. for a Debian point release).
BASE_VERSION="bookworm-minbase-python3-1"
BASE_PACKAGES="python3,python3-venv,ca-certificates"
SUITE=bookworm
APP_UID=10001
PY="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
[[ -x $PY ]] || PY=python3
OCI=("$PY" "$HERE/oci.py")

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

kind=${1:-}
[[ $kind == tidings || $kind == pause ]] || usage
shift
name="" out="$STATE/images"
tags=()
while (($#)); do
    case $1 in
        --name) name=$2; shift 2 ;;
        --tag) tags+=("$2"); shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h | --help) usage ;;
        *) die "unknown argument $1" ;;
    esac
done
[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot, overlay mounts)"
mkdir -p "$CACHE" "$out"
out="$(cd "$out" && pwd)"

# One build at a time per cache (the base and deps directories are shared).
exec 9>"$CACHE/.lock"
flock 9

# --- the pause image --------------------------------------------------------------------
build_pause() {
    local repo=${name:-registry.k8s.io/pause}
    ((${#tags[@]})) || tags=(3.6)
    command -v gcc >/dev/null || die "gcc is missing (apt-get install -y gcc libc6-dev)"
    local work="$CACHE/pause"
    rm -rf "$work" && mkdir -p "$work/root"
    gcc -static -Os -Wall -Wextra -o "$work/root/pause" "$HERE/pause/pause.c"
    strip "$work/root/pause"
    chmod 0755 "$work/root/pause"
    touch -d @0 "$work/root/pause"
    "${OCI[@]}" layer "$work/root" "$work/layer.tar.gz" >/dev/null
    local tag archive
    for tag in "${tags[@]}"; do
        archive="$out/${repo##*/}-$tag.tar"
        "${OCI[@]}" image --ref "$repo:$tag" --out "$archive" --layer "$work/layer.tar.gz" \
            --history "tidings e2e/image/pause/pause.c (gcc -static -Os)" \
            --entrypoint '["/pause"]' --user 65535:65535 --created 1970-01-01T00:00:00Z \
            --label org.opencontainers.image.title=pause \
            --label org.opencontainers.image.description="Pod sandbox, built from e2e/image/pause/pause.c" \
            >/dev/null
        log "pause image $repo:$tag -> $archive"
        echo "$archive"
    done
}

# --- the tidings image ------------------------------------------------------------------
mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null \
            || log "could not unmount ${mounts[i]}"
    done
    mounts=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# release <dir>: unmount whatever an interrupted build left mounted under dir (its overlay,
# and the /proc and /dev inside it), then delete dir without crossing into another file
# system: a stale bind mount of the host's /dev must never be emptied.
release() {
    local dir=$1 mnt
    [[ -e $dir ]] || return 0
    dir=$(realpath "$dir")
    while read -r mnt; do
        umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v d="$dir/" 'index($2 "/", d) == 1 {print $2}' /proc/mounts | sort -r)
    rm -rf --one-file-system "$dir"
}

debian_mirror() {
    if [[ -n ${TIDINGS_DEBIAN_MIRROR:-} ]]; then echo "$TIDINGS_DEBIAN_MIRROR"; return; fi
    local uri
    # The machine's own apt source for Debian (deb822 first, then the one-line format).
    uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && u != "" && $0 ~ /bookworm( |$)/ {print u; exit}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' \
        /etc/apt/sources.list 2>/dev/null || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# overlay_chroot_prepare <merged> <upper> <work> <lower...>: mount an overlay (+ /proc, /dev).
overlay_mount() {
    local merged=$1 upper=$2 work=$3
    shift 3
    local lower
    lower=$(IFS=:; echo "$*")
    mkdir -p "$merged" "$upper" "$work"
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$merged"
    mounts+=("$merged")
    mount -t proc proc "$merged/proc"
    mounts+=("$merged/proc")
    mount --bind /dev "$merged/dev"
    mounts+=("$merged/dev")
}

in_root() { # in_root <root> <command...>: a clean environment, no host pip settings
    local root=$1
    shift
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
        chroot "$root" "$@"
}

build_base() {
    local dir="$CACHE/base-$BASE_VERSION"
    if [[ -f $dir/layer.tar.gz.json ]]; then
        log "base layer cached ($dir)"
        return
    fi
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        apt-get install -y -q debootstrap >&2 || { apt-get update -q >&2 && apt-get install -y -q debootstrap >&2; }
    }
    local mirror t0=$SECONDS
    mirror=$(debian_mirror)
    release "$dir.tmp" && release "$dir"
    mkdir -p "$dir.tmp"
    log "debootstrap --variant=minbase $SUITE from $mirror (takes a few minutes)"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$dir.tmp/rootfs" "$mirror" \
        >"$dir.tmp/debootstrap.log" 2>&1 || { tail -n 30 "$dir.tmp/debootstrap.log" >&2; die "debootstrap failed"; }
    local r="$dir.tmp/rootfs"
    # The user the pods run as (runAsUser/runAsGroup 10001), as in the Dockerfile.
    in_root "$r" groupadd --system --gid "$APP_UID" tidings
    in_root "$r" useradd --system --uid "$APP_UID" --gid "$APP_UID" --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin tidings
    install -d -m 0755 -o "$APP_UID" -g "$APP_UID" "$r/var/lib/tidings"
    # Trim: package caches and lists, docs, logs, the host's name and resolver.
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
        "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
        "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old "$r"/var/log/*.log \
        "$r"/var/log/apt/* "$r"/tmp/* "$r"/root/.cache
    : >"$r/etc/resolv.conf"
    echo tidings >"$r/etc/hostname"
    "${OCI[@]}" layer "$r" "$dir.tmp/layer.tar.gz" \
        --skip-contents dev --skip-contents proc --skip-contents sys >/dev/null
    mv "$dir.tmp" "$dir"
    log "base layer built in $((SECONDS - t0))s ($(du -h "$dir/layer.tar.gz" | cut -f1))"
}

# The project's runtime dependencies (pyproject's [project].dependencies and what they
# need), pinned to the versions in the project's .venv: what the tests ran against.
write_requirements() {
    "$PY" "$HERE/pins.py" "$REPO_ROOT/pyproject.toml" >"$1/requirements.txt"
}

build_deps() { # sets deps_dir
    local tmp="$CACHE/deps.tmp" t0=$SECONDS key
    release "$tmp" && mkdir -p "$tmp"
    write_requirements "$tmp"
    key=$(cat "$tmp/requirements.txt" <(echo "$BASE_VERSION") | sha256sum | cut -c1-16)
    deps_dir="$CACHE/deps-$key"
    if [[ -f $deps_dir/layer.tar.gz.json ]]; then
        log "deps layer cached ($deps_dir)"
        release "$tmp"
        touch "$deps_dir"
        return
    fi
    log "downloading the dependencies' wheels"
    "$PY" -m pip wheel -q --wheel-dir "$tmp/wheels" -r "$tmp/requirements.txt" >&2
    cp "$tmp/requirements.txt" "$tmp/wheels/"
    local base="$CACHE/base-$BASE_VERSION/rootfs" merged="$tmp/merged"
    overlay_mount "$merged" "$tmp/upper" "$tmp/work" "$base"
    mkdir -p "$merged/tmp/wheels"
    cp "$tmp"/wheels/* "$merged/tmp/wheels/"
    log "installing the dependencies into /opt/tidings"
    in_root "$merged" python3 -m venv /opt/tidings
    in_root "$merged" /opt/tidings/bin/pip install -q --no-index --find-links /tmp/wheels \
        -r /tmp/wheels/requirements.txt >&2
    rm -rf "$merged/tmp/wheels" "$merged/root/.cache"
    cleanup
    rm -rf --one-file-system "$tmp/work" "$tmp/merged" "$tmp/wheels"
    "${OCI[@]}" layer "$tmp/upper" "$tmp/layer.tar.gz" >/dev/null
    release "$deps_dir"
    mv "$tmp" "$deps_dir"
    touch "$deps_dir"
    # Keep the two newest deps layers.
    ls -1dt "$CACHE"/deps-*/ 2>/dev/null | tail -n +3 | xargs -r rm -rf --one-file-system
    log "deps layer built in $((SECONDS - t0))s ($(du -h "$deps_dir/layer.tar.gz" | cut -f1))"
}

build_app() { # sets app_dir
    local key t0=$SECONDS
    key=$("${OCI[@]}" tree-hash "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/README.md" \
        "$REPO_ROOT/workloads" "$REPO_ROOT/operator" | cut -c1-16)
    key="$key-${deps_dir##*/deps-}"
    app_dir="$CACHE/app-$key"
    if [[ -f $app_dir/layer.tar.gz.json ]]; then
        log "app layer cached ($app_dir)"
        touch "$app_dir"
        return
    fi
    local tmp="$CACHE/app.tmp"
    release "$tmp" && mkdir -p "$tmp/wheels"
    log "building the project's wheel"
    # From a copy of the sources: setuptools writes build/ and *.egg-info next to them.
    mkdir -p "$tmp/src"
    cp -r "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/README.md" "$REPO_ROOT/workloads" \
        "$REPO_ROOT/operator" "$tmp/src/"
    find "$tmp/src" \( -name __pycache__ -o -name '*.egg-info' -o -name .mypy_cache \) \
        -prune -exec rm -rf {} +
    "$PY" -m pip wheel -q --no-deps --no-build-isolation --wheel-dir "$tmp/wheels" "$tmp/src" >&2 \
        || "$PY" -m pip wheel -q --no-deps --wheel-dir "$tmp/wheels" "$tmp/src" >&2
    local merged="$tmp/merged"
    overlay_mount "$merged" "$tmp/upper" "$tmp/work" "$deps_dir/upper" "$CACHE/base-$BASE_VERSION/rootfs"
    mkdir -p "$merged/tmp/wheels"
    cp "$tmp"/wheels/*.whl "$merged/tmp/wheels/"
    in_root "$merged" sh -c '/opt/tidings/bin/pip install -q --no-index --no-deps /tmp/wheels/*.whl' >&2
    ln -sfn /opt/tidings/bin/tidings "$merged/usr/local/bin/tidings"
    in_root "$merged" /opt/tidings/bin/tidings --help >/dev/null \
        || die "the installed tidings does not run"
    rm -rf "$merged/tmp/wheels" "$merged/root/.cache"
    cleanup
    rm -rf --one-file-system "$tmp/work" "$tmp/merged" "$tmp/src"
    "${OCI[@]}" layer "$tmp/upper" "$tmp/layer.tar.gz" >/dev/null
    mv "$tmp" "$app_dir"
    touch "$app_dir"
    # Keep the three newest app layers.
    ls -1dt "$CACHE"/app-*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf --one-file-system
    log "app layer built in $((SECONDS - t0))s ($(du -h "$app_dir/layer.tar.gz" | cut -f1))"
}

build_tidings() {
    local repo=${name:-docker.io/tidings/tidings}
    ((${#tags[@]})) || tags=(dev)
    build_base
    build_deps
    build_app
    local version revision tag archive
    version=$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
        "$REPO_ROOT/pyproject.toml")
    revision=$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    for tag in "${tags[@]}"; do
        archive="$out/${repo##*/}-$tag.tar"
        "${OCI[@]}" image --ref "$repo:$tag" --out "$archive" \
            --layer "$CACHE/base-$BASE_VERSION/layer.tar.gz" \
            --layer "$deps_dir/layer.tar.gz" --layer "$app_dir/layer.tar.gz" \
            --history "debootstrap --variant=minbase $SUITE + $BASE_PACKAGES, user tidings ($APP_UID)" \
            --history "python3 -m venv /opt/tidings + the dependencies" \
            --history "pip install tidings-$version (wheel of the working tree)" \
            --env PATH=/opt/tidings/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --env LANG=C.UTF-8 --env PYTHONUNBUFFERED=1 --env PYTHONDONTWRITEBYTECODE=1 \
            --env TIDINGS_IMAGE_TAG="$tag" \
            --user "$APP_UID:$APP_UID" --workdir /var/lib/tidings \
            --entrypoint '["tidings"]' --cmd '["--help"]' --stop-signal SIGTERM \
            --label org.opencontainers.image.title=tidings \
            --label org.opencontainers.image.description="Tidings chat: chat, api, push and the operator" \
            --label org.opencontainers.image.version="$version" \
            --label org.opencontainers.image.revision="$revision" \
            --label org.opencontainers.image.licenses=Apache-2.0 \
            --label org.opencontainers.image.base.name="debian:$SUITE (debootstrap minbase)" \
            --label dev.tidings.image.tag="$tag" \
            >/dev/null
        log "tidings image $repo:$tag -> $archive ($(du -h "$archive" | cut -f1))"
        echo "$archive"
    done
}

t_start=$SECONDS
"build_$kind"
log "done in $((SECONDS - t_start))s"
