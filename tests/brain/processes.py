"""Brains as real OS processes (`python -m brain`), to kill, freeze and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class BrainProcess:
    def __init__(
        self,
        *,
        store_url: str,
        nats_url: str,
        brain_id: str,
        log_path: Path,
        lease_s: float = 1.0,
        snapshot_every: int = 10,
        crash_at: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.brain_id = brain_id
        self.log_path = log_path
        self.env = {
            **os.environ,
            "KEEL_STORE_URL": store_url,
            "KEEL_NATS_URL": nats_url,
            "KEEL_BRAIN_ID": brain_id,
            "KEEL_LEASE_S": str(lease_s),
            "KEEL_SNAPSHOT_EVERY": str(snapshot_every),
            "KEEL_SWEEP_EVERY_S": "0.05",
            "KEEL_LOST_AFTER_S": "3",
            # A brain that will not stop is sent SIGABRT: its tracebacks land in its log.
            "PYTHONFAULTHANDLER": "1",
            **(extra_env or {}),
        }
        if crash_at:
            self.env["KEEL_CRASH_AT"] = crash_at
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> BrainProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "brain"], env=self.env, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while f"brain {self.brain_id} ready" not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"brain exited early:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"brain not ready after {timeout_s}s:\n{self.output()}")
            time.sleep(0.02)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGABRT)
                self.process.wait()
                raise AssertionError(f"brain did not stop on SIGTERM:\n{self.output()}") from None
