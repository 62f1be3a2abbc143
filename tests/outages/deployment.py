"""keel as separate processes (a brain, a hands host, a gateway) on a nats-server and a store
of the test's own, with a client that keeps working while a part is taken away."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import msgspec

from hands import LocalBackend
from tests.brain.processes import BrainProcess
from tests.brain.scenario import coding_script, coding_spec
from tests.gateway.processes import GatewayProcess
from tests.hands.processes import HandsProcess, remove_sandboxes
from tests.nats_server import NatsServer

# The longest any request may take while a part is away: an answer (a 503 included), never
# a hang.
ANSWER_WITHIN_S = 10.0


@dataclass
class Deployment:
    store_url: str
    nats: NatsServer
    root: Path
    brain: BrainProcess = field(init=False)
    hands: HandsProcess = field(init=False)
    gateway: GatewayProcess = field(init=False)

    def start(self) -> None:
        self.hands = HandsProcess(
            self.nats.url,
            self.root / "hands",
            self.root / "hands.log",
            host_id=f"hands-outage-{os.getpid()}-{time.monotonic_ns()}",
        ).start()
        self.brain = BrainProcess(
            store_url=self.store_url,
            nats_url=self.nats.url,
            brain_id="brain-outage",
            log_path=self.root / "brain.log",
            lease_s=2.0,
        ).start()
        self.gateway = GatewayProcess(self.store_url, self.nats.url, self.root / "gateway.log")

    async def stop(self) -> None:
        for stop in (self.gateway.kill, self.brain.stop, self.hands.stop):
            await asyncio.to_thread(stop)
        # A stopped hands host leaves its sandboxes for the next one, by design: none comes.
        await remove_sandboxes(self.root / "hands", LocalBackend())

    def logs(self) -> str:
        return "\n".join(
            f"== {path.name}\n{path.read_text(errors='replace')[-20000:]}"
            for path in (
                self.root / "brain.log",
                self.root / "hands.log",
                self.root / "gateway.log",
            )
        )


def spec(latency_ms: float) -> dict[str, Any]:
    """The coding session (two test runs, each counted in the workspace), as JSON."""
    return msgspec.to_builtins(coding_spec(coding_script(latency_ms)))  # type: ignore[no-any-return]


@dataclass
class Answer:
    key: str
    status: int
    seconds: float
    retry_after: str | None
    body: dict[str, Any] | None


@dataclass
class Client:
    """Creates sessions through the gateway, each with its own Idempotency-Key, and keeps
    every answer; a write that was not answered 2xx is retried (same key) until it is."""

    http: httpx2.AsyncClient
    latency_ms: float = 300.0
    answers: list[Answer] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # key -> session id

    async def create(self, key: str) -> Answer:
        started = time.monotonic()
        try:
            response = await self.http.post(
                "/v1/sessions",
                json={"spec": spec(self.latency_ms), "message": "go"},
                headers={"idempotency-key": key},
                timeout=ANSWER_WITHIN_S,
            )
        except httpx2.TimeoutException:
            answer = Answer(key, 0, time.monotonic() - started, None, None)
        else:
            body = response.json() if response.content else None
            answer = Answer(
                key,
                response.status_code,
                time.monotonic() - started,
                response.headers.get("retry-after"),
                body,
            )
            if response.status_code == 201:
                assert body is not None
                self.created[key] = body["id"]
        self.answers.append(answer)
        return answer

    async def keep_creating(self, stop: asyncio.Event, every_s: float = 0.5) -> None:
        number = 0
        while not stop.is_set():
            number += 1
            await self.create(f"during-{number}")
            await asyncio.sleep(every_s)

    async def retry_unanswered(self, within_s: float = 60.0) -> None:
        deadline = time.monotonic() + within_s
        keys = {a.key for a in self.answers} - self.created.keys()
        for key in sorted(keys):
            while (await self.create(key)).status != 201:
                assert time.monotonic() < deadline, f"{key} was never answered"
                await asyncio.sleep(0.5)

    async def wait_all(self, status: str = "completed", within_s: float = 120.0) -> None:
        deadline = time.monotonic() + within_s
        for session_id in self.created.values():
            while True:
                response = await self.http.get(f"/v1/sessions/{session_id}")
                if response.status_code == 200 and response.json()["status"] == status:
                    break
                assert time.monotonic() < deadline, (session_id, response.text)
                await asyncio.sleep(0.2)
