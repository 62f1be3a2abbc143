#!/usr/bin/env bash
# Build the sandbox image, keel-sandbox:latest, without pulling from any registry: debootstrap
# a minimal Debian bookworm from the apt mirror, then `docker import` it. The image is tagged
# keel-sandbox:<recipe>, where <recipe> is the sha256 of this script: editing the recipe
# rebuilds, and an image already built from it makes this script return at once. The rootfs
# tarball is cached, so a machine that lost its images only re-imports it. The Debian packages
# are whatever the mirror serves on the day of the build; to pick up newer security fixes
# with an unchanged recipe, `docker rmi keel-sandbox:<recipe>` and delete the tarball.
# deploy/sandbox/Dockerfile is the same recipe for machines that can pull debian:bookworm-slim;
# change both together.
set -euo pipefail

log() { printf '== %s\n' "$*"; }
die() { printf 'build-image: %s\n' "$*" >&2; exit 1; }

IMAGE=keel-sandbox
SUITE=bookworm
MIRROR=${KEEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${KEEL_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SANDBOX_UID=10001 # hands/_backend.py SANDBOX_UID
# What the executor (hands/executor.py, stdlib only) and the shell tools need. python3, not
# python3-minimal: asyncio, tarfile and hashlib live in libpython3.11-stdlib. git is for coding
# agents; it brings perl, which is most of its cost.
PACKAGES=(
    python3 bash coreutils grep findutils sed mawk tar gzip diffutils procps
    ca-certificates git
)
# Checked inside the rootfs before it becomes an image, so a missing module fails the build,
# not the first sandbox.
PYTHON_CHECK='import argparse, contextlib, fnmatch, json, os, pathlib, re, select, signal, socketserver, subprocess, threading, time'

[[ $EUID -eq 0 ]] || die "must run as root (debootstrap and docker import need it)"
command -v debootstrap >/dev/null || die "debootstrap is missing; run deploy/sandbox/ensure-docker.sh"
docker info >/dev/null 2>&1 || die "no docker engine answers; run deploy/sandbox/ensure-docker.sh"

RECIPE=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
TAG="$IMAGE:$RECIPE"
CACHE_DIR=${KEEL_CACHE_DIR:-$HOME/.cache/keel}
TARBALL="$CACHE_DIR/sandbox-rootfs-$RECIPE.tar"
mkdir -p "$CACHE_DIR"

started=${EPOCHREALTIME/./}
elapsed() {
    local us=$((${EPOCHREALTIME/./} - started))
    printf '%d.%ds' $((us / 1000000)) $((us / 100000 % 10))
}

# Two builds at once (parallel CI jobs on one machine) would debootstrap twice and race on
# the tarball; the second waits for the first and then finds its image.
exec 9>"$CACHE_DIR/sandbox-build.lock"
flock 9

if docker image inspect "$TAG" >/dev/null 2>&1; then
    docker tag "$TAG" "$IMAGE:latest"
    log "$TAG already built; tagged latest ($(elapsed))"
    exit 0
fi

rootfs=""
cleanup() {
    [[ -n $rootfs && -d $rootfs ]] || return 0
    # debootstrap leaves /proc and /sys mounted in the target if it dies mid-way; never let
    # rm walk into them.
    grep -o " $rootfs/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l || true
    rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

if [[ ! -f $TARBALL ]]; then
    rootfs=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    # mktemp makes it 0700, and it becomes the image's /: the sandbox user could not
    # traverse its own root.
    chmod 0755 "$rootfs"
    # Kept across recipes, so editing the recipe downloads only what changed.
    debs="$CACHE_DIR/debootstrap-debs"
    mkdir -p "$debs"
    log "debootstrap $SUITE (minbase + ${PACKAGES[*]})"
    include=$(IFS=,; echo "${PACKAGES[*]}")
    debootstrap --variant=minbase --include="$include" --cache-dir="$debs" \
        "$SUITE" "$rootfs" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 || {
        tail -n 30 "$CACHE_DIR/debootstrap.log" >&2
        die "debootstrap failed; see $CACHE_DIR/debootstrap.log"
    }
    log "debootstrap done ($(elapsed))"

    # debootstrap installs from the release suite only; the security and point-release fixes
    # come from the other two, as they would in an image built from debian:bookworm-slim.
    cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
    chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive sh -euc '
        apt-get update -q -o Acquire::Languages=none
        apt-get upgrade -y -q
        useradd --uid '"$SANDBOX_UID"' --user-group --home-dir /workspace --no-create-home \
            --shell /bin/bash sandbox
        mkdir -p /workspace /keel
        chown '"$SANDBOX_UID:$SANDBOX_UID"' /workspace
        chmod 0755 /workspace /keel
        apt-get clean
        python3 -c "'"$PYTHON_CHECK"'"
    ' >>"$CACHE_DIR/debootstrap.log" 2>&1 || {
        tail -n 30 "$CACHE_DIR/debootstrap.log" >&2
        die "configuring the rootfs failed; see $CACHE_DIR/debootstrap.log"
    }
    log "security updates, user and checks done ($(elapsed))"

    # Nothing in a sandbox reads docs, man pages, translations or apt's lists (the licences,
    # usr/share/doc/*/copyright, stay), and Docker mounts its own resolv.conf, hosts and
    # hostname over the ones copied from this machine.
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,info,locale,lintian,linda}/* \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
        "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* \
        "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname
    : >"$rootfs/etc/resolv.conf"

    # Sorted, numeric owners: the tarball depends on the packages, not on this machine's
    # users or directory order. Written aside and renamed, so a killed build leaves no
    # half-tarball that a later run would trust.
    tar -C "$rootfs" --sort=name --numeric-owner -cf "$TARBALL.partial" .
    mv "$TARBALL.partial" "$TARBALL"
    cleanup
    rootfs=""
    log "rootfs tarball $TARBALL ($(du -h "$TARBALL" | cut -f1)) ($(elapsed))"
fi

# LANG and HOME match what the local (bubblewrap) backend sets; USER is the sandbox uid, so
# a container that forgets --user still does not run as root.
docker import \
    --change "USER $SANDBOX_UID" \
    --change 'WORKDIR /workspace' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV HOME=/workspace' \
    --change "LABEL org.keel.sandbox.recipe=$RECIPE" \
    --change 'CMD ["/bin/bash"]' \
    --message "keel sandbox, recipe $RECIPE" \
    "$TARBALL" "$TAG" >/dev/null
docker tag "$TAG" "$IMAGE:latest"
log "imported $TAG, tagged latest ($(docker image inspect -f '{{.Size}}' "$TAG" | numfmt --to=iec)) ($(elapsed))"

# Older recipes are dead weight: nothing will import their tarballs again, and their images
# go too, unless a container still uses one (docker rmi without -f refuses; that is fine).
find "$CACHE_DIR" -maxdepth 1 -name 'sandbox-rootfs-*.tar' ! -name "${TARBALL##*/}" -delete
docker image ls "$IMAGE" --format '{{.Tag}}' | grep -vx -e latest -e "$RECIPE" |
    sed "s/^/$IMAGE:/" | xargs -r docker rmi >/dev/null 2>&1 || true
