"""Schemathesis against the served OpenAPI, over a real socket: no 5xx, nothing undocumented.

Its `schemathesis run` (configured by `schemathesis.toml` here) sends every operation in
`/openapi.json` generated valid and invalid requests, with the tenant's key, without one and
with a bad one, and checks each answer's status, content type, headers and body against the
document. No brain runs: a fuzzed spec may name a real model provider, and no request may
leave 127.0.0.1. The gateway's own metrics then confirm what reached it.
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

from schemas import AgentSpec, SessionCreated, ThreadMessageReceived, ThreadOrigin
from session_store import EventStore

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
ROOT = Path(__file__).resolve().parents[2]
MIN_REQUESTS = 1000
RUN_TIMEOUT_S = 240


# The run has its own limit; the test's is past it, so a slow run fails with its report.
@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
async def test_every_documented_operation_holds_under_schemathesis(
    gateway_url: str, store: EventStore, tmp_path: Path
) -> None:
    key = await store.create_api_key("acme", "schemathesis")
    # What a Managed Agents session is made from (`schemathesis_hooks`).
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
    # A thread of that session, as a brain's spawn call would have made it.
    origin = ThreadOrigin(
        parent_session_id=session["id"],
        call_id="fuzzed-call",
        agent_name="worker",
        root_session_id=session["id"],
        thread_id="sthr_fuzzed",
    )
    created = SessionCreated(spec=AgentSpec(turn_end="idle"), title="worker", thread=origin)
    task = ThreadMessageReceived(from_session_id=session["id"], call_id="fuzzed-call", text="hi")
    await store.create_thread(session["id"], "sthr_fuzzed", created, [task])
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color"),
        *("run", f"{gateway_url}/openapi.json"),
        cwd=tmp_path,  # where Hypothesis and Schemathesis keep their caches
        env={
            **os.environ,
            "KEEL_API_KEY": key.key,
            "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "tests.gateway.schemathesis_hooks",
            "KEEL_SCHEMATHESIS_AGENT": agent["id"],
            "KEEL_SCHEMATHESIS_ENVIRONMENT": environment["id"],
            "KEEL_SCHEMATHESIS_SESSION": session["id"],
            "KEEL_SCHEMATHESIS_THREAD": "sthr_fuzzed",
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
