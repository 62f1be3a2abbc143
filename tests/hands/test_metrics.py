"""A hands host's metrics (`hands._metrics`), scraped over HTTP from the address its settings
name, as Prometheus would: sandboxes live and cold-started, calls by tool and outcome, and an
idle sandbox reaped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx2
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hands import HandsHost, HandsSettings
from hands._backend import SandboxBackend
from schemas import CallRequest, new_id
from tests.hands.client import HandsTestClient

SESSION = "ses_metrics"


@pytest.fixture(params=["local"])
def backend_name(request: pytest.FixtureRequest) -> str:
    """Metrics are the host's, not the backend's: bubblewrap is enough."""
    return str(request.param)


@pytest.fixture
async def host(settings: HandsSettings, backend: SandboxBackend) -> AsyncIterator[HandsHost]:
    # Served on a free port; a sandbox quiet for a second is checkpointed and reaped.
    settings = msgspec.structs.replace(
        settings, metrics_addr="127.0.0.1:0", sandbox_check_s=0.2, sandbox_idle_s=1.0
    )
    host = HandsHost(settings, backend)
    await host.start()
    try:
        yield host
    finally:
        await host.close(destroy_sandboxes=True)


async def scrape(host: HandsHost) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    assert host.metrics_server is not None
    async with httpx2.AsyncClient() as http:
        text = (await http.get(host.metrics_server.url)).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def test_sandboxes_and_calls_are_served_as_prometheus_metrics(
    host: HandsHost, client: HandsTestClient
) -> None:
    sandbox = (await client.provision(SESSION)).sandbox_id
    calls = {
        "ok": CallRequest(
            call_id=new_id("call"), session_id=SESSION, name="bash", input={"command": "true"}
        ),
        "error": CallRequest(
            call_id=new_id("call"), session_id=SESSION, name="bash", input={"command": "exit 3"}
        ),
    }
    for call in calls.values():
        assert not (await client.send(sandbox, call)).error
    for kind, call in calls.items():
        assert (await client.outcome(SESSION, call.call_id)).outcome == kind

    scraped = await scrape(host)
    assert sample(scraped, "keel_hands_sandboxes", state="served") == 1
    assert sample(scraped, "keel_hands_sandboxes", state="warm") == 0
    assert sample(scraped, "keel_hands_sandbox_start_seconds_count", backend="local") == 1
    assert sample(scraped, "keel_hands_provisions_total", source="cold") == 1
    for kind in ("ok", "error"):
        count = "keel_hands_call_seconds_count"
        assert sample(scraped, count, tool="bash", outcome=kind) == 1

    # Quiet past its idle limit, with no brain to say otherwise: checkpointed and removed.
    deadline = time.monotonic() + 30
    while sample(scraped, "keel_hands_reaped_total", reason="idle") < 1:
        assert time.monotonic() < deadline, scraped
        await asyncio.sleep(0.2)
        scraped = await scrape(host)
    assert sample(scraped, "keel_hands_sandboxes", state="served") == 0
