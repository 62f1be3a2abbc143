"""Three real nats-servers clustered over loopback with JetStream (each its own store
directory, routes on free ports), to kill and restart one node at a time."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import nats
import nats.errors

from tests.nats_server import free_port, nats_server_binary, wait_for_port

CLUSTER_NAME = "keel-test"


class ClusterNode:
    def __init__(self, name: str, root: Path, route_ports: list[int], route_port: int) -> None:
        self.name = name
        self.store_dir = root / name
        self.port = free_port()
        self.route_port = route_port
        self.routes = ",".join(f"nats://127.0.0.1:{port}" for port in route_ports)
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = root / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    nats_server_binary(),
                    *("-a", "127.0.0.1", "-p", str(self.port), "-n", self.name),
                    *("-js", "-sd", str(self.store_dir)),
                    *("--cluster_name", CLUSTER_NAME),
                    *("--cluster", f"nats://127.0.0.1:{self.route_port}"),
                    *("--routes", self.routes),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, f"nats-server {self.name}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class NatsCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        root.mkdir(parents=True, exist_ok=True)
        route_ports = [free_port() for _ in range(size)]
        self.nodes = [
            ClusterNode(f"n{index + 1}", root, route_ports, port)
            for index, port in enumerate(route_ports)
        ]

    @property
    def url(self) -> str:
        """Every node, comma-separated: what KEEL_NATS_URL takes."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        asyncio.run(self.wait_for_jetstream())

    async def wait_for_jetstream(self, within_s: float = 30.0) -> None:
        """Until the JetStream meta group has a leader (streams can be made)."""
        deadline = time.monotonic() + within_s
        nc = await nats.connect(self.url.split(","), max_reconnect_attempts=-1)
        try:
            while True:
                try:
                    await nc.jetstream().account_info()
                    return
                except (nats.errors.Error, TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
