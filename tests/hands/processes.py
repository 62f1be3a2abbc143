"""A hands host as a real process (`python -m hands`), to stop, kill and start again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from hands import SandboxBackend, SandboxRecord


class HandsProcess:
    def __init__(
        self,
        nats_url: str,
        data_dir: Path,
        log: Path,
        *,
        host_id: str,
        backend: str = "local",
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = log
        self.host_id = host_id
        self.env = {
            **os.environ,
            "KEEL_NATS_URL": nats_url,
            "KEEL_HANDS_DIR": str(data_dir),
            # A restarted host keeps its id, to adopt its sandboxes.
            "KEEL_HANDS_ID": host_id,
            "KEEL_SANDBOX_BACKEND": backend,
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HandsProcess:
        ready = self.log.read_text(errors="replace").count("ready") if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hands"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while self.log.read_text(errors="replace").count("ready") == ready:
            assert self.process.poll() is None and time.monotonic() < deadline, self.output()
            time.sleep(0.05)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def remove_sandboxes(data_dir: Path, backend: SandboxBackend) -> None:
    """What a stopped (or killed) host left for its successor, when none comes: a test's end."""
    for path in (data_dir / "sandboxes").glob("*/record.json"):
        record = msgspec.json.decode(path.read_bytes(), type=SandboxRecord)
        await backend.remove(record)
