"""The embedded sandbox backend: the executor in Linux namespaces, limited by cgroups.

No network (a private network namespace with only its own loopback), the system mounted
read-only, /workspace writable, an empty environment, its own pid, ipc, mount and uts
namespaces, and a user who is unprivileged on the host: uid 10001 when the host runs as
root, else the host's own user. Built with bubblewrap when it is installed, else with
`unshare` (util-linux) plus a chroot, which needs the host to run as root. The sandbox runs
in its own session, so it outlives a hands host that dies, and a new host adopts it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from hands._backend import (
    EXECUTOR_SOURCE,
    SANDBOX_UID,
    SandboxDirs,
    SandboxRecord,
    chown_tree,
    executor_command,
)
from hands._cgroup import Cgroup

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc")
PYTHON = "/usr/bin/python3"


class LocalBackendUnavailable(Exception):
    pass


class LocalBackend:
    name = "local"

    def __init__(self, isolation: Literal["bwrap", "unshare"] | None = None) -> None:
        """`isolation`: bubblewrap or unshare; by default bubblewrap when it is installed."""
        if not Path(PYTHON).exists():
            raise LocalBackendUnavailable(f"{PYTHON} is missing: the executor needs it")
        if isolation is None:
            isolation = "bwrap" if shutil.which("bwrap") else "unshare"
        if isolation == "bwrap" and shutil.which("bwrap") is None:
            raise LocalBackendUnavailable("bubblewrap (bwrap) is not installed")
        if isolation == "unshare" and (os.geteuid() != 0 or not shutil.which("unshare")):
            raise LocalBackendUnavailable(
                "without bubblewrap, the local backend needs unshare and a hands host run as root"
            )
        if os.geteuid() == 0 and not (shutil.which("unshare") and shutil.which("setpriv")):
            raise LocalBackendUnavailable(
                "a hands host run as root needs unshare and setpriv (util-linux) to start "
                "its sandboxes as an unprivileged user"
            )
        self.isolation = isolation
        # Sandboxes this process started: kept to reap them (adopted ones are not our children).
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    async def prepare(self, dirs: SandboxDirs) -> None:
        """On a root host the sandbox user is host uid 10001, who must own its directories;
        on any other host it is the host's own user, who owns them already."""
        if os.geteuid() == 0:
            await asyncio.to_thread(chown_tree, dirs.workspace)
            await asyncio.to_thread(chown_tree, dirs.ipc)

    async def start(self, record: SandboxRecord, dirs: SandboxDirs) -> str:
        spec = record.spec
        memory = spec.memory_mb * 1024 * 1024
        # The host's id in the group's name: a host reaps only its own orphans.
        handle = f"{record.host_id}.{record.sandbox_id}"
        group = Cgroup(handle)
        await asyncio.to_thread(group.create, memory_bytes=memory, pids=spec.pids, cpus=spec.cpus)
        executor = executor_command(PYTHON, memory)
        if self.isolation == "bwrap":
            # bubblewrap may run as the sandbox user, who may not reach the package's path.
            await asyncio.to_thread(shutil.copyfile, EXECUTOR_SOURCE, dirs.executor)
            command = bwrap_command(dirs, executor, network=spec.network, root=os.geteuid() == 0)
        else:
            command = _unshare_command(dirs, executor, network=spec.network)
        log = (dirs.root / "sandbox.log").open("ab")
        # The shell joins the cgroups, then becomes the sandbox: nothing escapes the limits.
        self._children[handle] = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            ["/bin/sh", "-c", f'{group.join_command()} && exec "$@"', "sandbox", *command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={},
            start_new_session=True,
            close_fds=True,
        )
        log.close()
        return handle

    async def alive(self, record: SandboxRecord) -> bool:
        return bool(Cgroup(record.handle).pids())

    async def kill(self, record: SandboxRecord) -> None:
        await asyncio.to_thread(Cgroup(record.handle).kill_all)
        self._reap(record.handle)

    async def remove(self, record: SandboxRecord) -> None:
        await asyncio.to_thread(Cgroup(record.handle).remove)
        self._reap(record.handle)

    def _reap(self, sandbox_id: str) -> None:
        child = self._children.pop(sandbox_id, None)
        if child is not None:
            child.kill()
            child.wait()

    async def reap_unknown(self, host_id: str, known: set[str]) -> int:
        parent = next(iter(Cgroup("_").dirs.values())).parent
        names = {p.name for p in parent.iterdir() if p.is_dir()} if parent.is_dir() else set()
        orphans = {name for name in names if name.startswith(f"{host_id}.")} - known
        for name in orphans:
            await asyncio.to_thread(Cgroup(name).remove)
            self._reap(name)
        return len(orphans)


# Where a root host shows bubblewrap the sandbox's directory: see bwrap_command.
_STAGE = "/tmp"
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def bwrap_command(
    dirs: SandboxDirs, executor: list[str], *, network: bool, root: bool
) -> list[str]:
    """The command that starts the sandbox with bubblewrap, from a host run as root or not.

    bubblewrap maps the sandbox user to the user who runs it, so a root host never runs it
    as root (the sandbox would be host root, able to read /etc/shadow): it runs it as the
    sandbox user, who has no right to the path of the sandbox's directory (a data directory
    under /root, pytest's 0700 temporary directories). So it first binds that directory on
    /tmp of a private mount namespace, as root, then drops to the sandbox user with no way to
    regain privileges, and bubblewrap binds what it needs from there (its own /tmp is a fresh
    tmpfs). A host that is not root runs bubblewrap as itself, on the directory's own path.
    """
    source = Path(_STAGE) if root else dirs.root
    bwrap = [shutil.which("bwrap") or "bwrap", *_isolation(network), *_mounts(source), *executor]
    if not root:
        return bwrap
    uid = str(SANDBOX_UID)
    return [
        shutil.which("unshare") or "unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        f'mount --bind "$0" {_STAGE} && exec "$@"',
        str(dirs.root),
        shutil.which("setpriv") or "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--no-new-privs",
        *bwrap,
    ]


def _isolation(network: bool) -> list[str]:
    uid = str(SANDBOX_UID)
    return [
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        *([] if network else ["--unshare-net"]),
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--uid",
        uid,
        "--gid",
        uid,
        "--hostname",
        "sandbox",
        "--new-session",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/local/bin:/usr/bin:/bin",
        "--setenv",
        "HOME",
        "/workspace",
        "--setenv",
        "LANG",
        "C.UTF-8",
    ]


def _mounts(source: Path) -> list[str]:
    """The sandbox's file system, its own directories taken from `source`."""
    mounts: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            mounts += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            mounts += ["--ro-bind", path, path]
    # Not --dev: its devpts makes bubblewrap nest a second user namespace, in which the
    # sandbox user's map names uid 0 (of the first namespace). The devices a command needs,
    # bound one by one, on a /dev the sandbox cannot write.
    mounts += ["--proc", "/proc", "--tmpfs", "/dev"]
    for device in _DEVICES:
        mounts += ["--dev-bind", f"/dev/{device}", f"/dev/{device}"]
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        mounts += ["--symlink", f"/proc/self/fd/{number}", f"/dev/{name}"]
    mounts += [
        "--symlink",
        "/proc/self/fd",
        "/dev/fd",
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--bind",
        str(source / "workspace"),
        "/workspace",
        "--bind",
        str(source / "ipc"),
        "/keel/ipc",
        "--ro-bind",
        str(source / "executor.py"),
        "/keel/executor.py",
        # Last: the root bubblewrap built is read-only too; only /workspace and /tmp write.
        "--remount-ro",
        "/",
        "--chdir",
        "/workspace",
    ]
    return mounts


# Runs as root in fresh mount/pid/net/ipc/uts namespaces (nothing propagates back to the
# host): builds a root of read-only binds on a tmpfs, then chroots into it as the sandbox
# user, with no privileges to regain and an empty environment.
_UNSHARE_SETUP = r"""
set -eu
root=$1 workspace=$2 ipc=$3 executor=$4 uid=$5
shift 5
mount --make-rprivate /
mount -t tmpfs -o mode=0755,size=1m keel-root "$root"
for dir in /usr /etc; do
    mkdir -p "$root$dir"
    mount --rbind "$dir" "$root$dir"
    mount -o remount,bind,ro "$root$dir"
done
for link in /bin /sbin /lib /lib64; do
    if [ -L "$link" ]; then ln -s "$(readlink "$link")" "$root$link"; fi
done
mkdir -p "$root/proc" "$root/dev" "$root/tmp" "$root/workspace" "$root/keel/ipc"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755,size=64k keel-dev "$root/dev"
for device in null zero full random urandom tty; do
    touch "$root/dev/$device"
    mount --bind "/dev/$device" "$root/dev/$device"
done
mount -t tmpfs -o mode=1777,size=64m keel-tmp "$root/tmp"
mount --bind "$workspace" "$root/workspace"
mount --bind "$ipc" "$root/keel/ipc"
touch "$root/keel/executor.py"
mount --bind "$executor" "$root/keel/executor.py"
mount -o remount,bind,ro "$root/keel/executor.py"
mount -o remount,ro "$root"
cd "$root"
# Becomes the sandbox user, with no capability to keep or regain (the bounding set too), and
# a shell that stays the namespace's pid 1: its `wait` reaps the orphans a killed command
# leaves, which would otherwise linger as zombies. Nothing in the sandbox stays root.
exec chroot . /usr/bin/setpriv --reuid="$uid" --regid="$uid" --clear-groups \
    --bounding-set=-all --inh-caps=-all --no-new-privs \
    /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/workspace LANG=C.UTF-8 \
    /bin/sh -c '"$@" & wait $!' sandbox "$@"
"""


def _unshare_command(dirs: SandboxDirs, executor: list[str], *, network: bool) -> list[str]:
    root = dirs.root / "root"
    root.mkdir(exist_ok=True)
    namespaces = ["--mount", "--pid", "--fork", "--ipc", "--uts"]
    if not network:
        namespaces.append("--net")
    return [
        "unshare",
        *namespaces,
        "/bin/sh",
        "-c",
        _UNSHARE_SETUP,
        "sandbox",
        str(root),
        str(dirs.workspace),
        str(dirs.ipc),
        str(EXECUTOR_SOURCE),
        str(SANDBOX_UID),
        *executor,
    ]
