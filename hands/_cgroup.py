"""Per-sandbox resource limits for the local backend, through cgroups (v2 or v1).

The sandbox's first process joins its group before it execs bubblewrap, so every process
the sandbox ever starts is counted: memory, pids (a fork bomb stalls at the limit) and CPU.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
_PERIOD_US = 100_000


class CgroupError(Exception):
    pass


class Cgroup:
    def __init__(self, name: str) -> None:
        self.name = name
        if (ROOT / "cgroup.controllers").exists():
            self.dirs = {"unified": ROOT / "keel" / name}
        else:
            self.dirs = {c: ROOT / c / "keel" / name for c in ("pids", "memory", "cpu")}

    def create(self, *, memory_bytes: int, pids: int, cpus: float) -> None:
        try:
            if "unified" in self.dirs:
                _enable_v2_controllers(self.dirs["unified"].parent)
            for directory in self.dirs.values():
                directory.mkdir(parents=True, exist_ok=True)
            quota = max(1000, int(cpus * _PERIOD_US))
            if "unified" in self.dirs:
                unified = self.dirs["unified"]
                (unified / "memory.max").write_text(str(memory_bytes))
                (unified / "memory.swap.max").write_text("0")
                (unified / "pids.max").write_text(str(pids))
                (unified / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
            else:
                (self.dirs["pids"] / "pids.max").write_text(str(pids))
                (self.dirs["memory"] / "memory.limit_in_bytes").write_text(str(memory_bytes))
                (self.dirs["cpu"] / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
                (self.dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError as exc:
            raise CgroupError(f"cannot set up cgroup {self.name}: {exc}") from exc

    def join_command(self) -> str:
        """Shell that moves the current shell into every group (then it execs the sandbox)."""
        return " && ".join(f"echo $$ > {d}/cgroup.procs" for d in self.dirs.values())

    def pids(self) -> list[int]:
        directory = next(iter(self.dirs.values()))
        try:
            return [int(p) for p in (directory / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the group until none is left (forks race the kill)."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self) -> None:
        self.kill_all()
        for directory in self.dirs.values():
            for _ in range(100):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)  # the killed processes are still being reaped


def _enable_v2_controllers(parent: Path) -> None:
    # v2 hands a controller to a child only when every ancestor delegates it.
    (ROOT / "cgroup.subtree_control").write_text("+memory +pids +cpu")
    parent.mkdir(exist_ok=True)
    (parent / "cgroup.subtree_control").write_text("+memory +pids +cpu")
