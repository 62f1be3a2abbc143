"""Schemathesis against the served OpenAPI, over a real socket: no 5xx, nothing undocumented.

Its `schemathesis run` (configured by `schemathesis.toml` here) sends every operation in
`/openapi.json` generated valid and invalid requests, with the tenant's key, without one and
with a bad one, and checks each answer's status, content type, headers and body against the
document. No brain runs: a fuzzed spec may name a real model provider, and no request may
leave 127.0.0.1 (none sends webhooks either). The gateway's own metrics then confirm what
reached it.

A self-hosted environment's work queue is fuzzed with a key of its worker, on work the test
made: two sessions waiting on the worker (as a brain leaves them), one item of which the
test's worker holds and one the cases may stop.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import WebhookSettings
from schemas import (
    WAITING_FOR_CLIENT,
    AgentSpec,
    SessionCreated,
    ThreadMessageReceived,
    ThreadOrigin,
)
from session_store import EventStore
from tests.session_store.work_contract import set_status

CONFIG = Path(__file__).with_name("schemathesis.toml")
ROOT = Path(__file__).resolve().parents[2]
MIN_REQUESTS = 1000
RUN_TIMEOUT_S = 240
# A drill with real processes and waits: `pytest -m "not slow"` runs the rest. The run may
# take its whole RUN_TIMEOUT_S (on a loaded machine, past the suite's 120 s per test), so the
# test's own timeout gives it that and time to make and check what it uses.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(RUN_TIMEOUT_S + 60)]
# Where tenants may point webhooks here: nothing listens, and no deliverer runs.
WEBHOOK_URL = "http://127.0.0.1:9/hooks"


@pytest.fixture
def webhook_settings() -> WebhookSettings:
    """Webhooks allowed (to one URL), so that an endpoint can be set at all."""
    return WebhookSettings(allowed_urls=WEBHOOK_URL)


async def make_thread(store: EventStore, session_id: str) -> str:
    """A thread of the session, as a brain's spawn call would have made it."""
    thread_id = "sthr_fuzzed"
    origin = ThreadOrigin(
        parent_session_id=session_id,
        call_id="fuzzed-call",
        agent_name="worker",
        root_session_id=session_id,
        thread_id=thread_id,
    )
    created = SessionCreated(spec=AgentSpec(turn_end="idle"), title="worker", thread=origin)
    task = ThreadMessageReceived(from_session_id=session_id, call_id="fuzzed-call", text="hi")
    await store.create_thread(session_id, thread_id, created, [task])
    return thread_id


# The run has its own limit; the test's is past it, so a slow run fails with its report.
@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
async def test_every_documented_operation_holds_under_schemathesis(
    gateway_url: str, store: EventStore, tmp_path: Path
) -> None:
    key = await store.create_api_key("acme", "schemathesis")
    # What Managed Agents sessions and work are made from (`schemathesis_hooks`).
    async with httpx2.AsyncClient(
        base_url=gateway_url, headers={"authorization": f"Bearer {key.key}"}
    ) as client:
        environment = (
            await client.post(
                "/v1/environments", json={"name": "fuzzed", "config": {"type": "self_hosted"}}
            )
        ).json()
        agent = (
            await client.post("/v1/agents", json={"name": "fuzzed", "model": "keel-scripted"})
        ).json()
        made = {"agent": agent["id"], "environment_id": environment["id"]}
        session = (await client.post("/managed-agents/v1/sessions", json=made)).json()
        worker_key = (
            await client.post(f"/v1/environments/{environment['id']}/keys", json={})
        ).json()["key"]
        work_sessions = []
        for _ in range(2):
            waiting = (await client.post("/managed-agents/v1/sessions", json=made)).json()
            await set_status(store, waiting["id"], "waiting", WAITING_FOR_CLIENT)
            work_sessions.append(waiting["id"])
        queue = f"/v1/environments/{environment['id']}/work"
        worker = {"authorization": f"Bearer {worker_key}"}
        polled = [(await client.get(f"{queue}/poll", headers=worker)).json() for _ in range(2)]
        held, to_stop = polled
        acked = await client.post(f"{queue}/{held['id']}/ack", headers=worker)
        assert acked.json()["state"] == "starting", acked.text
    thread_id = await make_thread(store, session["id"])
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color"),
        *("run", f"{gateway_url}/openapi.json"),
        cwd=tmp_path,  # where Hypothesis and Schemathesis keep their caches
        env={
            **os.environ,
            "KEEL_API_KEY": key.key,
            "KEEL_ENVIRONMENT_KEY": worker_key,
            "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "tests.gateway.schemathesis_hooks",
            "KEEL_SCHEMATHESIS_AGENT": agent["id"],
            "KEEL_SCHEMATHESIS_ENVIRONMENT": environment["id"],
            "KEEL_SCHEMATHESIS_SESSION": session["id"],
            "KEEL_SCHEMATHESIS_WORK_SESSIONS": ",".join(work_sessions),
            "KEEL_SCHEMATHESIS_WORK": held["id"],
            "KEEL_SCHEMATHESIS_WORK_TO_STOP": to_stop["id"],
            "KEEL_SCHEMATHESIS_WEBHOOK_URL": f"{WEBHOOK_URL}/fuzzed",
            "KEEL_SCHEMATHESIS_THREAD": thread_id,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(run.communicate(), RUN_TIMEOUT_S)
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()
    report = output.decode(errors="replace")
    assert run.returncode == 0, report

    async with httpx2.AsyncClient(base_url=gateway_url) as client:
        document = (await client.get("/openapi.json")).json()
        metrics = (await client.get("/metrics")).text
    answered: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "keel_http_requests_total":
                labels = sample.labels
                answered[labels["method"], labels["route"], labels["status"]] += int(sample.value)
    paths = document["paths"]
    requests = sum(n for (_, route, _), n in answered.items() if route in paths)
    assert requests >= MIN_REQUESTS, (requests, report)
    server_errors = {k: n for k, n in answered.items() if k[2].startswith("5")}
    assert not server_errors, (server_errors, report)
    # Each operation was reached with the key and answered, not only refused.
    succeeded = {(method, route) for method, route, status in answered if status.startswith("2")}
    documented = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert documented <= succeeded, (documented - succeeded, report)

    # What the test made was used, never destroyed: its sessions live, its environment is not
    # archived, and the item its worker holds was never stopped.
    async with httpx2.AsyncClient(
        base_url=gateway_url, headers={"authorization": f"Bearer {key.key}"}
    ) as client:
        shown = await client.get(f"/v1/environments/{environment['id']}")
        assert shown.json()["archived_at"] is None, shown.text
        for session_id in (session["id"], *work_sessions):
            shown = await client.get(f"/managed-agents/v1/sessions/{session_id}")
            assert shown.status_code == 200 and shown.json()["archived_at"] is None, shown.text
        shown = await client.get(f"{queue}/{held['id']}")
        assert shown.json()["state"] in ("queued", "starting", "active"), shown.text
