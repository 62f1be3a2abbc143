"""What a drill acts on: the processes of one keel, and where to reach it.

Two kinds: `keel up` on this machine, driven through its admin socket (it restarts what the
drill kills); and a deployment of separate processes described by a TOML file naming, for
each process, its pid file and the command that starts it again, and for the store's
server the commands that stop and start it. A fault the target has no means for is never
drawn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

import msgspec

from deploy.admin import admin_call, admin_socket_path
from deploy.up import api_key_path
from drill._plan import FaultKind
from schemas import AdminRestart, AdminSignal, AdminSignalChild, AdminStatus, ChildName


class TargetUnreachable(Exception):
    """The drill cannot reach what it was pointed at: nothing was run."""


class Endpoints(msgspec.Struct, frozen=True, kw_only=True):
    http_url: str
    api_key: str
    store_url: str
    # Where the hands keep their sandboxes, when the drill runs on their machine.
    hands_dir: str = ""
    sandbox: str = "local"
    lease_s: float = 2.0
    sandbox_check_s: float = 30.0


class Target(Protocol):
    endpoints: Endpoints

    def kinds(self) -> frozenset[FaultKind]: ...
    def signal(self, part: ChildName, signame: AdminSignal) -> None:
        """Signal a part; after SIGKILL it is running again (or starting) on return."""

    def restart(self, part: ChildName) -> None: ...
    def store_away(self, seconds: float) -> None:
        """Stop the store's server, wait `seconds`, start it again (0: a restart)."""


class EmbeddedTarget:
    """`keel up` in `data_dir`: everything learned from its admin socket. Its store is SQLite
    in a file: there is no server to restart or lose, so no store fault is drawn (the
    outage tests cover a full or read-only disk)."""

    def __init__(self, data_dir: Path) -> None:
        self.socket = admin_socket_path(data_dir.resolve())
        try:
            status = admin_call(self.socket, AdminStatus())
        except OSError as exc:
            raise TargetUnreachable(f"no keel up answers at {self.socket} ({exc})") from None
        self.endpoints = Endpoints(
            http_url=status.http_url,
            api_key=api_key_path(data_dir.resolve()).read_text().strip(),
            store_url=status.store_url,
            hands_dir=status.hands_dir,
            sandbox=status.sandbox,
            lease_s=status.lease_s,
            sandbox_check_s=status.sandbox_check_s,
        )
        self.children = {child.name for child in status.children}

    def kinds(self) -> frozenset[FaultKind]:
        kinds: set[FaultKind] = {"brain_kill", "brain_freeze", "hands_kill", "gateway_kill"}
        kinds |= {"sandbox_kill"} if self.endpoints.hands_dir else set()
        kinds |= {"nats_restart"} if "nats" in self.children else set()
        return frozenset(kinds)

    def signal(self, part: ChildName, signame: AdminSignal) -> None:
        admin_call(self.socket, AdminSignalChild(child=part, signal=signame))

    def restart(self, part: ChildName) -> None:
        admin_call(self.socket, AdminRestart(child=part))

    def store_away(self, seconds: float) -> None:
        raise RuntimeError("keel up's SQLite store has no server to take away")


class ProcessControl(msgspec.Struct, frozen=True, kw_only=True):
    """One process of a deployment: where its pid is, and how to start it again (a command
    that returns once it has started it, as `systemctl start` does)."""

    pid_file: str
    start: list[str]


class StoreControl(msgspec.Struct, frozen=True, kw_only=True):
    """The store's server (PostgreSQL): commands that stop it and start it."""

    stop: list[str]
    start: list[str]


class DeploymentConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`keel drill --deployment FILE`: a TOML file of these fields."""

    http_url: str
    store_url: str
    api_key: str = ""
    api_key_file: str = ""
    hands_dir: str = ""
    sandbox: str = "local"
    lease_s: float = 2.0
    sandbox_check_s: float = 30.0
    brain: ProcessControl | None = None
    hands: ProcessControl | None = None
    gateway: ProcessControl | None = None
    nats: ProcessControl | None = None
    store: StoreControl | None = None

    def key(self) -> str:
        if self.api_key:
            return self.api_key
        if self.api_key_file:
            return Path(self.api_key_file).read_text().strip()
        key = os.environ.get("KEEL_API_KEY", "")
        if not key:
            raise SystemExit("the deployment file names no api_key or api_key_file")
        return key


class DeploymentTarget:
    def __init__(self, config: DeploymentConfig) -> None:
        self.config = config
        self.endpoints = Endpoints(
            http_url=config.http_url,
            api_key=config.key(),
            store_url=config.store_url,
            hands_dir=config.hands_dir,
            sandbox=config.sandbox,
            lease_s=config.lease_s,
            sandbox_check_s=config.sandbox_check_s,
        )

    @classmethod
    def from_file(cls, path: Path) -> DeploymentTarget:
        return cls(msgspec.toml.decode(path.read_bytes(), type=DeploymentConfig))

    def kinds(self) -> frozenset[FaultKind]:
        config = self.config
        kinds: set[FaultKind] = set()
        kinds |= {"brain_kill", "brain_freeze"} if config.brain else set()
        kinds |= {"hands_kill"} if config.hands else set()
        kinds |= {"gateway_kill"} if config.gateway else set()
        kinds |= {"nats_restart"} if config.nats else set()
        kinds |= {"store_restart", "store_loss"} if config.store else set()
        kinds |= {"sandbox_kill"} if config.hands_dir else set()
        return frozenset(kinds)

    def signal(self, part: ChildName, signame: AdminSignal) -> None:
        control = self._control(part)
        pid = int(Path(control.pid_file).read_text().split()[0])
        os.kill(pid, signal.Signals[signame])
        if signame == "SIGKILL":
            _wait_gone(pid)
            subprocess.run(control.start, check=True, timeout=60)

    def restart(self, part: ChildName) -> None:
        control = self._control(part)
        pid = int(Path(control.pid_file).read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid)
        subprocess.run(control.start, check=True, timeout=60)

    def store_away(self, seconds: float) -> None:
        store = self.config.store
        assert store is not None
        subprocess.run(store.stop, check=True, timeout=120)
        time.sleep(seconds)
        subprocess.run(store.start, check=True, timeout=120)

    def _control(self, part: ChildName) -> ProcessControl:
        control: ProcessControl | None = getattr(self.config, part)
        assert control is not None, f"the deployment file names no {part}"
        return control


def _wait_gone(pid: int, within_s: float = 30.0) -> None:
    """Until `pid` has exited: gone, or a zombie nobody reaped yet."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state == "Z":
            return
        time.sleep(0.02)
    raise RuntimeError(f"process {pid} did not exit in {within_s}s")
