"""The processes `keel up` runs, by name: started with their log in the data directory,
signalled and restarted on request (its admin socket), stopped in reverse order."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from schemas import AdminSignal, ChildName, ChildState


class Children:
    """Thread-safe: the admin socket's thread restarts a child while the main loop watches."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._running: dict[ChildName, subprocess.Popen[bytes]] = {}
        self._commands: dict[ChildName, tuple[list[str], dict[str, str]]] = {}
        self._starts: dict[ChildName, int] = {}
        self._lock = threading.RLock()

    def start(self, name: ChildName, command: Sequence[str], env: dict[str, str]) -> None:
        with self._lock, (self.log_dir / f"{name}.log").open("ab") as log:
            child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            self._running[name] = child
            self._commands[name] = (list(command), env)
            self._starts[name] = self._starts.get(name, 0) + 1

    def signal(self, name: ChildName, signame: AdminSignal) -> None:
        """Send `signame`; after SIGKILL, start the child again at once, as a supervisor
        would (it is no exit of its own, which stops `keel up`)."""
        with self._lock:
            child = self._running[name]
            child.send_signal(signal.Signals[signame])
            if signame == "SIGKILL":
                child.wait()
                self.start(name, *self._commands[name])

    def restart(self, name: ChildName) -> None:
        with self._lock:
            _stop(self._running[name])
            self.start(name, *self._commands[name])

    def exited(self) -> tuple[ChildName, int] | None:
        """A child that exited by itself, and its code."""
        with self._lock:
            for name, child in self._running.items():
                if child.poll() is not None:
                    return name, child.returncode
        return None

    def states(self) -> list[ChildState]:
        with self._lock:
            return [
                ChildState(
                    name=name,
                    pid=child.pid,
                    running=child.poll() is None,
                    starts=self._starts[name],
                )
                for name, child in self._running.items()
            ]

    def stop_all(self) -> None:
        """The last started first: the gateway (no new work), then the brain, the hands,
        and NATS last."""
        with self._lock:
            for child in reversed(self._running.values()):
                _stop(child)


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGCONT)  # a frozen child cannot act on SIGTERM
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
