#!/usr/bin/env bash
# Make a Docker engine answer on this machine: install it if missing, start dockerd in the
# background, wait until `docker info` works. Idempotent: a working engine is left alone.
# Exits non-zero, saying why, if the engine does not come up.
set -euo pipefail

log() { printf '== %s\n' "$*"; }
die() { printf 'ensure-docker: %s\n' "$*" >&2; exit 1; }

LOG_FILE=${KEEL_DOCKERD_LOG:-/var/log/keel-dockerd.log}
WAIT_S=${KEEL_DOCKERD_WAIT_S:-60}
# bubblewrap (the local sandbox backend) and debootstrap (build-image.sh) ride along, so a
# fresh machine needs one apt run; the keyring lets debootstrap check the Release signature.
PACKAGES=(docker.io bubblewrap debootstrap debian-archive-keyring)

if docker info >/dev/null 2>&1; then
    exit 0
fi

installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

missing=()
for package in "${PACKAGES[@]}"; do
    installed "$package" || missing+=("$package")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # No recommends: they add apparmor, needrestart and git to the host, none of which the
    # engine needs. apt-get update only when the lists are absent or stale (a 404 on install).
    install=(apt-get install -y -q --no-install-recommends "${missing[@]}")
    if ! apt-cache show docker.io >/dev/null 2>&1; then
        apt-get update -q
    fi
    "${install[@]}" || { apt-get update -q && "${install[@]}"; }
fi

# The engine may already be starting (another run of this script); start a second one and
# both fight over /var/run/docker.pid.
if ! pgrep -x dockerd >/dev/null; then
    log "starting dockerd (log: $LOG_FILE)"
    # No iptables and no bridge: sandboxes run with --network none, and the build never
    # pulls, so the engine needs no NAT rules or docker0 (and must not touch the host's
    # firewall). overlay2 is named so a kernel that cannot do it fails here, loudly, instead
    # of dockerd quietly falling back to the slow vfs driver.
    setsid nohup dockerd --iptables=false --ip6tables=false --bridge=none \
        --storage-driver=overlay2 >>"$LOG_FILE" 2>&1 </dev/null &
fi

for ((i = 0; i < WAIT_S * 2; i++)); do
    if docker info >/dev/null 2>&1; then
        log "docker engine up: $(docker version --format '{{.Server.Version}}') ($(docker info --format '{{.Driver}}'))"
        exit 0
    fi
    if ! pgrep -x dockerd >/dev/null; then
        tail -n 20 "$LOG_FILE" >&2 || true
        die "dockerd exited during startup; see $LOG_FILE"
    fi
    sleep 0.5
done
tail -n 20 "$LOG_FILE" >&2 || true
die "dockerd did not answer within ${WAIT_S}s; see $LOG_FILE"
