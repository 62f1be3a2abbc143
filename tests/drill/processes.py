"""What `keel drill` is run against in its tests: `keel up` as a process of its own, and a
deployment of separate processes each started by a command that writes its pid file, as an
operator's init system would."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import msgspec

from deploy.admin import admin_socket_path
from drill import DeploymentConfig, ProcessControl, StoreControl
from hands import LocalBackend
from tests.hands.processes import remove_sandboxes
from tests.nats_server import free_port, nats_server_binary

# What the drill's tests set for every keel process: quick checks and timeouts, so faults
# are recovered from in seconds and a finished session's sandbox goes within one; sandboxes
# started ahead of demand, so a provisioning is seldom in flight when a hands host dies
# (one lost with its host costs the session 120 s: docs/design-notes.md, Drills).
QUICK = {
    "KEEL_WARM_POOL": "2",
    "KEEL_LEASE_S": "2",
    "KEEL_LOST_AFTER_S": "3",
    "KEEL_PROBE_EVERY_S": "1",
    "KEEL_SANDBOX_CHECK_S": "1",
    "KEEL_SANDBOX_IDLE_S": "20",
}


def drill(*args: str) -> subprocess.CompletedProcess[str]:
    """`keel drill ARGS`, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", "drill", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


class KeelUp:
    """`keel up` in `data_dir`, until `stop()` (Ctrl-C, as its user stops it)."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        with (data_dir / "up.out").open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "deploy.cli", "up", "--data-dir", str(data_dir)),
                    *("--port", str(free_port())),
                ],
                env={**os.environ, **QUICK, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not admin_socket_path(data_dir).exists():
            assert self.process.poll() is None and time.monotonic() < deadline, self.logs()
            time.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(
            f"== {path.name}\n{path.read_text(errors='replace')[-10000:]}"
            for path in [*sorted(self.data_dir.glob("*.log")), self.data_dir / "up.out"]
        )

    def stop(self) -> None:
        """Ctrl-C; then what its stopped hands host left for a successor (by design: the
        warm pool, say), since none comes."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        asyncio.run(remove_sandboxes(self.data_dir / "hands", LocalBackend()))


def started_by_command(command: list[str], env: dict[str, str], pid_file: Path) -> list[str]:
    """A command that starts `command` in the background with `env` added, writes its pid
    to `pid_file` and returns: what `systemctl start` is to a unit."""
    words = ["env", *(f"{name}={value}" for name, value in env.items()), *command]
    log = pid_file.with_suffix(".log")
    script = f"{shlex.join(words)} >> {shlex.quote(str(log))} 2>&1 & "
    script += f"echo $! > {shlex.quote(str(pid_file))}"
    return ["sh", "-c", script]


class SeparateProcesses:
    """nats-server, a hands host, a brain and a gateway, each its own process started by a
    command, on a store of the test's; described to the drill by a deployment file."""

    def __init__(
        self, root: Path, store_url: str, api_key: str, store: StoreControl | None
    ) -> None:
        self.root = root
        nats_port, http_port = free_port(), free_port()
        nats_url = f"nats://127.0.0.1:{nats_port}"
        self.http_url = f"http://127.0.0.1:{http_port}"
        base = {**QUICK, "KEEL_STORE_URL": store_url, "KEEL_NATS_URL": nats_url}
        python = [sys.executable, "-m"]
        nats = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(nats_port), "-js"]
        commands = {
            "nats": ([*nats, "-sd", str(root / "nats")], {}),
            "hands": (
                [*python, "hands"],
                base | {"KEEL_HANDS_DIR": str(root / "hands"), "KEEL_HANDS_ID": "drill-hands"},
            ),
            "brain": ([*python, "brain"], base | {"KEEL_BRAIN_ID": "drill-brain"}),
            "gateway": ([*python, "gateway", "--port", str(http_port)], base),
        }
        self.pid_files = {name: root / f"{name}.pid" for name in commands}
        controls = {
            name: ProcessControl(
                pid_file=str(self.pid_files[name]),
                start=started_by_command(command, env, self.pid_files[name]),
            )
            for name, (command, env) in commands.items()
        }
        self.config = DeploymentConfig(
            http_url=self.http_url,
            store_url=store_url,
            api_key=api_key,
            hands_dir=str(root / "hands"),
            lease_s=2.0,
            sandbox_check_s=1.0,
            store=store,
            **controls,  # type: ignore[arg-type]
        )

    def write_config(self) -> Path:
        """The deployment file, as an operator writes it: scalars, then a table per part.
        (JSON strings, numbers and arrays of strings are TOML too.)"""
        fields = msgspec.to_builtins(self.config)
        lines = [f"{k} = {json.dumps(v)}" for k, v in fields.items() if not isinstance(v, dict)]
        for name, table in fields.items():
            if isinstance(table, dict):
                lines += ["", f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
        path = self.root / "deployment.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        for name in ("nats", "hands", "brain", "gateway"):
            control: ProcessControl = getattr(self.config, name)
            subprocess.run(control.start, check=True)
            if name == "nats":
                time.sleep(0.5)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"{self.http_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(
            f"== {path.name}\n{path.read_text(errors='replace')[-10000:]}"
            for path in sorted(self.root.glob("*.log"))
        )

    def stop(self) -> None:
        for name in ("gateway", "brain", "hands", "nats"):
            pid = int(self.pid_files[name].read_text())
            for signum in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    break
            deadline = time.monotonic() + 15
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    break
                time.sleep(0.05)
