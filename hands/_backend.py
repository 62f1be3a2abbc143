"""What a sandbox backend does, and the host-side layout every sandbox shares.

A sandbox is a directory on the hands host (`workspace/`, mounted writable at /workspace, and
`ipc/`, mounted at /keel/ipc, where the executor listens on a unix socket and keeps its call
records) plus an isolated process tree running the executor. Backends differ only in how
they isolate that process tree.
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
        "--state",
        "/keel/ipc/state",
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


class SandboxDirs:
    def __init__(self, sandboxes_root: Path, sandbox_id: str) -> None:
        self.root = sandboxes_root / sandbox_id
        self.workspace = self.root / "workspace"
        self.ipc = self.root / "ipc"
        self.socket = self.ipc / "executor.sock"
        # The executor's source, copied here for backends whose sandbox cannot reach the
        # package (an engine on another machine; bubblewrap run as the sandbox user).
        self.executor = self.root / "executor.py"
        self.state = self.ipc / "state"
        self.record = self.root / "record.json"

    def read_output(self, call_id: str) -> bytes | None:
        """The full output the executor spilled for `call_id`, or None.

        The sandbox can write here, so the host never trusts a path it names and never
        follows a link it planted: it opens the one expected file, without following links.
        """
        path = self.state / "out" / f"{call_id}.out"
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(descriptor, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None
            return file.read()


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
