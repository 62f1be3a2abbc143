"""A gateway killed mid-stream: the client reconnects to another and misses nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from brain.service import Brain
from session_store import EventStore
from tests.gateway.processes import GatewayProcess
from tests.gateway.sse import sse, sse_events
from tests.nats_server import NatsServer

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow


@pytest.fixture
def gateways(
    tmp_path: Path, nats_server: NatsServer, store: EventStore
) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.kill()


async def test_a_client_resumes_on_another_gateway_and_sees_each_event_once(
    tmp_path: Path,
    nats_server: NatsServer,
    store: EventStore,
    brain: Brain,
    gateways: list[GatewayProcess],
) -> None:
    store_url = f"sqlite:///{tmp_path / 'keel.db'}"
    first = GatewayProcess(store_url, nats_server.url, tmp_path / "gateway-1.log")
    gateways.append(first)
    key = (await store.create_api_key("acme")).key
    headers = {"authorization": f"Bearer {key}"}
    spec = {
        "model": {
            "provider": "scripted",
            "options": {"script": [{"text": "a slow answer", "latency_ms": 1500}]},
        }
    }
    async with httpx2.AsyncClient(base_url=first.url, headers=headers) as client:
        created = await client.post("/v1/sessions", json={"spec": spec, "message": "go"})
        session_id = created.json()["id"]
        seen: list[dict[str, str]] = []
        with pytest.raises(httpx2.HTTPError):  # the gateway dies under the client
            async with client.stream("GET", f"/v1/sessions/{session_id}/stream") as stream:
                async for event in sse_events(stream):
                    seen.append(event)
                    if len(seen) == 3:  # mid-session: the model is still thinking
                        first.kill()
    second = GatewayProcess(store_url, nats_server.url, tmp_path / "gateway-2.log")
    gateways.append(second)
    async with httpx2.AsyncClient(base_url=second.url, headers=headers) as client:
        url = f"/v1/sessions/{session_id}/stream"
        async with client.stream("GET", url, headers={"last-event-id": seen[-1]["id"]}) as rest:
            seen += await sse(rest)
    seqs = [int(event["id"]) for event in seen]
    assert seqs == list(range(1, len(seqs) + 1))
    assert seen[-1]["event"] == "session.status" and '"completed"' in seen[-1]["data"]
