"""Metrics as plain ASGI middleware (`gateway._metrics`): a response, an SSE stream above
all, passes through at once, in the request's own task; a request counts when its response
ends, with its status; latency is to the response's start."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import httpx2
import pytest
from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Message, Receive, Scope, Send

from gateway._federation import Federation
from gateway._metrics import GatewayMetrics, MetricsMiddleware
from gateway._settings import GatewaySettings
from schemas import MetricsServer, SettingsError, settings_from_env
from session_store import EventStore
from session_store._metrics import StoreMetrics
from tests.gateway.sse import sse_events
from tests.gateway.test_api import SPEC
from tests.nats_server import free_port

STREAM = "/v1/sessions/{session_id}/stream"


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def http_scope() -> Scope:
    return {"type": "http", "method": "GET", "path": "/v1/sessions/ses_1/stream", "headers": []}


async def nothing() -> Message:
    return {"type": "http.disconnect"}


async def test_a_stream_passes_through_at_once_and_counts_when_it_ends(store: EventStore) -> None:
    metrics = GatewayMetrics(store, NATS())
    release = asyncio.Event()

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = SimpleNamespace(path=STREAM, path_format=STREAM)  # as the router notes it
        start = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": start})
        await send({"type": "http.response.body", "body": b"retry: 1000\n\n", "more_body": True})
        await release.wait()  # a live stream: more may come, much later
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    sent: list[tuple[Message, asyncio.Task[None] | None]] = []
    first_bytes = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append((message, asyncio.current_task()))
        if message.get("body"):
            first_bytes.set()

    serving = asyncio.create_task(MetricsMiddleware(stream, metrics)(http_scope(), nothing, send))
    await asyncio.wait_for(first_bytes.wait(), timeout=5)
    # The first bytes are out while the stream is open, sent from the request's own task: no
    # buffer and no task in between.
    assert [message["type"] for message, _ in sent] == ["http.response.start", "http.response.body"]
    assert {task for _, task in sent} == {serving}
    assert value(metrics, "keel_sse_streams") == 1.0
    assert value(metrics, "keel_http_request_seconds_count", method="GET", route=STREAM) == 1.0
    counted = {"method": "GET", "route": STREAM, "status": "200"}
    assert value(metrics, "keel_http_requests_total", **counted) is None  # not over yet

    release.set()
    await asyncio.wait_for(serving, timeout=5)
    assert value(metrics, "keel_http_requests_total", **counted) == 1.0
    assert value(metrics, "keel_sse_streams") == 0.0


async def test_a_request_that_fails_before_answering_counts_as_a_500(store: EventStore) -> None:
    metrics = GatewayMetrics(store, NATS())

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("a bug")

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    try:
        await MetricsMiddleware(broken, metrics)(http_scope(), nothing, send)
    except RuntimeError:
        pass  # the server's error middleware answers it
    else:
        raise AssertionError("the error was swallowed")
    labels = {"method": "GET", "route": "unmatched", "status": "500"}
    assert value(metrics, "keel_http_requests_total", **labels) == 1.0


async def test_a_live_stream_is_open_in_the_metrics_and_counted_once_it_closes(
    client: httpx2.AsyncClient,
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    route = f'route="{STREAM}"'
    async with client.stream("GET", f"/v1/sessions/{session_id}/stream") as live:
        events = sse_events(live)
        first = await asyncio.wait_for(anext(events), timeout=5)  # the session is still idle
        assert first["event"] == "session.created"
        open_now = (await client.get("/metrics")).text
        assert "keel_sse_streams 1.0" in open_now
        assert f'keel_http_request_seconds_count{{method="GET",{route}}} 1.0' in open_now
        assert f'keel_http_requests_total{{method="GET",{route}' not in open_now
        await events.aclose()
    deadline = time.monotonic() + 10
    counted = f'keel_http_requests_total{{method="GET",{route},status="200"}} 1.0'
    while counted not in (text := (await client.get("/metrics")).text):
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.1)
    assert "keel_sse_streams 0.0" in text


async def test_the_federated_scrape_labels_every_series_with_its_process() -> None:
    """`keel up`'s one scrape: the gateway's series and each process's, a family two
    processes share (the store's) merged into one, a process that does not answer left out
    and shown down."""
    gateway, brain = CollectorRegistry(), CollectorRegistry()
    StoreMetrics("sqlite", gateway).commit_appends.observe(1)
    StoreMetrics("sqlite", brain).commit_appends.observe(3)
    Counter("keel_brain_runs", "runs", ["stopped"], registry=brain).labels("ended").inc()
    served = MetricsServer.start("127.0.0.1:0", brain)
    try:
        federation = Federation.parse(f"brain={served.url},hands=http://127.0.0.1:{free_port()}/")
        assert federation is not None
        text = (await federation.render(gateway)).decode()
    finally:
        await asyncio.to_thread(served.close)
    assert text.count("# TYPE keel_store_commit_appends histogram") == 1
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def sample(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    assert sample("keel_store_commit_appends_sum", backend="sqlite", keel_process="gateway") == 1
    assert sample("keel_store_commit_appends_sum", backend="sqlite", keel_process="brain") == 3
    assert sample("keel_brain_runs_total", stopped="ended", keel_process="brain") == 1
    assert sample("keel_process_up", keel_process="gateway") == 1
    assert sample("keel_process_up", keel_process="brain") == 1
    assert sample("keel_process_up", keel_process="hands") == 0


def test_a_malformed_federation_stops_the_gateway_at_start() -> None:
    with pytest.raises(SettingsError, match="KEEL_METRICS_FEDERATE"):
        settings_from_env(GatewaySettings, {"KEEL_METRICS_FEDERATE": "brain:9100"})
