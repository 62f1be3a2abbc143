"""A webhook receiver for tests: a real HTTP server (uvicorn) on a loopback port that keeps
every request it is sent, and answers as a test tells it: fail the first few, hold some
open, or fail a path for good. And how a test sets where webhooks go, and reads them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import uvicorn
from anthropic import AsyncAnthropic
from starlette.types import Receive, Scope, Send

from tests.nats_server import free_port

# How long a stalled request goes unanswered: longer than the senders in tests wait.
STALL_S = 2.0


@dataclass(frozen=True)
class Delivery:
    path: str
    body: str
    headers: dict[str, str]
    # What the receiver answered: 200 taken, 500 refused, 0 held or stalled: nothing.
    status: int


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)
    # Answer 500 to this many requests first (after the stalled ones).
    fail_first: int = 0
    # Answer nothing to this many requests first, for longer than a sender waits.
    stall_first: int = 0
    # Paths answered 500 every time.
    failing_paths: set[str] = field(default_factory=set)
    # Hold a request matching this (its body) open until `released` is set.
    hold: Callable[[str], bool] = lambda _: False
    released: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when a request is being held.
    holding: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/hooks") -> str:
        return self.origin + path

    def taken(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.status == 200]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        text = body.decode()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = 200
        if self.hold(text) and not self.released.is_set():
            self.deliveries.append(Delivery(scope["path"], text, headers, 0))
            self.holding.set()
            await self.released.wait()
            return  # whoever sent it is gone by now; nothing to answer
        if self.stall_first > 0:
            self.stall_first -= 1
            self.deliveries.append(Delivery(scope["path"], text, headers, 0))
            await asyncio.sleep(STALL_S)
            return  # the sender has given up waiting
        if self.fail_first > 0 or scope["path"] in self.failing_paths:
            self.fail_first = max(0, self.fail_first - 1)
            status = 500
        self.deliveries.append(Delivery(scope["path"], text, headers, status))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, ready: Callable[[list[Delivery]], bool], within_s: float = 20) -> None:
        """Until `ready(taken deliveries)`, or fail saying what came."""
        deadline = asyncio.get_running_loop().time() + within_s
        while not ready(self.taken()):
            if asyncio.get_running_loop().time() > deadline:
                came = [(d.status, d.path, d.body) for d in self.deliveries]
                raise AssertionError(f"not there after {within_s} s; came: {came}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[Receiver]:
    server = uvicorn.Server(
        uvicorn.Config(
            receiver, host="127.0.0.1", port=receiver.port, log_level="warning", lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), task
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.should_exit = True
        await task


async def set_endpoint(sdk: AsyncAnthropic, url: str, **fields: Any) -> dict[str, Any]:
    """`PUT /v1/webhook_endpoint` with the SDK's own key (keel's API: the SDK has no call)."""
    async with httpx2.AsyncClient(base_url=str(sdk.base_url)) as http:
        response = await http.put(
            "/v1/webhook_endpoint",
            json={"url": url, **fields},
            headers={"authorization": f"Bearer {sdk.api_key}"},
        )
    assert response.status_code == 200, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


def types_of(deliveries: list[Delivery], session_id: str) -> list[str]:
    """The webhook types a session's deliveries carried, in the order they were taken."""
    seen: list[str] = []
    ids: set[str] = set()
    for delivery in deliveries:
        event = json_of(delivery)
        if event["data"]["id"] == session_id and event["id"] not in ids:
            ids.add(event["id"])
            seen.append(event["data"]["type"])
    return seen


def json_of(delivery: Delivery) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(delivery.body)
    return parsed
