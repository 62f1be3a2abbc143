"""The embedded sandbox backend: the executor under bubblewrap, limited by cgroups.

No network (a private network namespace with only its own loopback), the system mounted
read-only, /workspace writable, an empty environment, a non-root user in its own user, pid,
ipc and uts namespaces. The sandbox runs in its own session, so it outlives a hands host that
dies, and a new host adopts it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

from hands._backend import EXECUTOR_SOURCE, SANDBOX_UID, SandboxDirs, SandboxRecord
from hands._cgroup import Cgroup

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc")
PYTHON = "/usr/bin/python3"


class LocalBackendUnavailable(Exception):
    pass


class LocalBackend:
    name = "local"

    def __init__(self) -> None:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise LocalBackendUnavailable("bubblewrap (bwrap) is not installed")
        if not Path(PYTHON).exists():
            raise LocalBackendUnavailable(f"{PYTHON} is missing: the executor needs it")
        self._bwrap = bwrap
        # Sandboxes this process started: kept to reap them (adopted ones are not our children).
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    async def prepare(self, dirs: SandboxDirs) -> None:
        """Nothing to do: the sandbox user is mapped to the host's own user."""

    async def start(self, record: SandboxRecord, dirs: SandboxDirs) -> str:
        spec = record.spec
        memory = spec.memory_mb * 1024 * 1024
        group = Cgroup(record.sandbox_id)
        await asyncio.to_thread(group.create, memory_bytes=memory, pids=spec.pids, cpus=spec.cpus)
        command = [self._bwrap, *_isolation(), *_mounts(dirs)]
        command += [
            PYTHON,
            "-I",
            "/keel/executor.py",
            "--socket",
            "/keel/ipc/executor.sock",
            "--workspace",
            "/workspace",
            "--state",
            "/keel/ipc/state",
            "--memory-bytes",
            str(memory),
        ]
        if spec.network:
            command.remove("--unshare-net")
        log = (dirs.root / "sandbox.log").open("ab")
        # The shell joins the cgroups, then becomes bubblewrap: nothing escapes the limits.
        self._children[record.sandbox_id] = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            ["/bin/sh", "-c", f'{group.join_command()} && exec "$@"', "sandbox", *command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={},
            start_new_session=True,
            close_fds=True,
        )
        log.close()
        return record.sandbox_id

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

    async def reap_unknown(self, known: set[str]) -> int:
        parent = next(iter(Cgroup("_").dirs.values())).parent
        names = {p.name for p in parent.iterdir() if p.is_dir()} if parent.is_dir() else set()
        orphans = names - known
        for name in orphans:
            await asyncio.to_thread(Cgroup(name).remove)
        return len(orphans)


def _isolation() -> list[str]:
    uid = str(SANDBOX_UID)
    return [
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
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


def _mounts(dirs: SandboxDirs) -> list[str]:
    mounts: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            mounts += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            mounts += ["--ro-bind", path, path]
    mounts += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--bind",
        str(dirs.workspace),
        "/workspace",
        "--bind",
        str(dirs.ipc),
        "/keel/ipc",
        "--ro-bind",
        str(EXECUTOR_SOURCE),
        "/keel/executor.py",
        # Last: the root bubblewrap built is read-only too; only /workspace and /tmp write.
        "--remount-ro",
        "/",
        "--chdir",
        "/workspace",
    ]
    return mounts
