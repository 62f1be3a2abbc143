"""What a sandbox backend does, and the host-side layout every sandbox shares.

A sandbox is a directory on the hands host (`workspace/`, mounted writable at /workspace;
`ipc/`, mounted at /keel/ipc, where the executor listens on a unix socket and spills long
output; and, mounted nowhere, the host's records of its calls) plus an isolated process tree
running the executor. Backends differ only in how they isolate that process tree.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Protocol

import msgspec

from schemas import SandboxSpec

# The sandbox user, also baked into the sandbox image.
SANDBOX_UID = 10001
# How a sandbox's directory and its executor's protocol are laid out. A host adopts only
# sandboxes of its own layout: 2 keeps call records on the host side and speaks `collect`;
# 1 (records without the field) kept them where the sandbox could rewrite them.
LAYOUT = 2
EXECUTOR_SOURCE = Path(__file__).with_name("executor.py")


def executor_command(python: str, memory_bytes: int) -> list[str]:
    """How a sandbox starts its executor, in the paths every backend mounts it at."""
    return [
        python,
        "-I",  # isolated: no environment, no user site, no script directory on the path
        "-S",  # no site module: the executor needs only the standard library
        "/keel/executor.py",
        "--socket",
        "/keel/ipc/executor.sock",
        "--workspace",
        "/workspace",
        "--outputs",
        "/keel/ipc/out",
        "--memory-bytes",
        str(memory_bytes),
    ]


class SandboxRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What identifies a sandbox to any host, including one that starts after a crash."""

    sandbox_id: str
    session_id: str
    host_id: str
    backend: str
    created_at: float
    spec: SandboxSpec = SandboxSpec()
    # The backend's own handle: a process id (local) or a container id (docker).
    handle: str = ""
    layout: int = LAYOUT
    # The lease epoch of the brain run that asked for it (see `hands._reaper`).
    lease_epoch: int = 0


class _StoredLayout(msgspec.Struct):
    layout: int = 1


def stored_layout(data: bytes) -> int:
    """The layout of a stored record: records from before the field are layout 1."""
    return msgspec.json.decode(data, type=_StoredLayout).layout


class SandboxDirs:
    def __init__(self, sandboxes_root: Path, sandbox_id: str) -> None:
        self.root = sandboxes_root / sandbox_id
        self.workspace = self.root / "workspace"
        self.ipc = self.root / "ipc"
        self.socket = self.ipc / "executor.sock"
        self.outputs = self.ipc / "out"
        # The host's records of the sandbox's calls: in no mount, out of every command's reach.
        self.calls = self.root / "calls"
        # The executor's source, copied here for backends whose sandbox cannot reach the
        # package (an engine on another machine; bubblewrap run as the sandbox user).
        self.executor = self.root / "executor.py"
        self.record = self.root / "record.json"

    def read_output(self, call_id: str) -> bytes | None:
        """The full output the executor spilled for `call_id`, or None.

        The sandbox can write here, so the host never trusts a path it names and never
        follows a link (or opens a pipe) it planted: it opens the one expected file, from a
        directory reached without following links.
        """
        try:
            descriptor = self._open_output(call_id)
        except OSError:
            return None
        with os.fdopen(descriptor, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None
            return file.read()

    def remove_output(self, call_id: str) -> None:
        try:
            directory = os.open(self.outputs, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return
        try:
            os.unlink(f"{call_id}.out", dir_fd=directory)
        except OSError:
            pass
        finally:
            os.close(directory)

    def _open_output(self, call_id: str) -> int:
        directory = os.open(self.outputs, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
            return os.open(f"{call_id}.out", flags, dir_fd=directory)
        finally:
            os.close(directory)


class SandboxBackend(Protocol):
    name: str

    async def prepare(self, dirs: SandboxDirs) -> None:
        """Make the host directories usable by the sandbox user (after files are added)."""
        ...

    async def start(self, record: SandboxRecord, dirs: SandboxDirs) -> str:
        """Start the executor isolated in `dirs`; returns the backend handle."""
        ...

    async def alive(self, record: SandboxRecord) -> bool: ...

    async def kill(self, record: SandboxRecord) -> None:
        """Kill the sandbox at once (its calls in flight are lost)."""
        ...

    async def remove(self, record: SandboxRecord) -> None:
        """Kill it if needed and free everything it held except its directory."""
        ...

    async def reap_unknown(self, host_id: str, known: set[str]) -> int:
        """Remove the sandboxes host `host_id` started whose handle is not in `known`
        (orphans of an incarnation that died before recording them); returns how many.
        Other hosts' sandboxes on the same machine are never touched."""
        ...


def chown_tree(root: Path) -> None:
    """Give a directory tree to the sandbox user, never following a link planted in it."""
    os.chown(root, SANDBOX_UID, SANDBOX_UID)
    for directory, subdirectories, names in os.walk(root):
        for name in [*subdirectories, *names]:
            os.lchown(os.path.join(directory, name), SANDBOX_UID, SANDBOX_UID)
