"""The gateway as a real process (`python -m gateway`) on a free port, for crash tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from tests.nats_server import free_port


class GatewayProcess:
    def __init__(
        self,
        store_url: str,
        nats_url: str,
        log: Path,
        env: dict[str, str] | None = None,
        *,
        port: int | None = None,
    ) -> None:
        """`port`: a restarted gateway's, so its clients find it where it was."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--port", str(self.port)],
                env={
                    **os.environ,
                    "KEEL_STORE_URL": store_url,
                    "KEEL_NATS_URL": nats_url,
                    **(env or {}),
                },
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
