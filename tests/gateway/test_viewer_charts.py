"""The viewer's charts in a real headless Chromium, over a real session: the gateway, a brain,
a hands host with local sandboxes, a keel-scripted model with a price, tool calls that pass
and fail, and a thread with a call of its own. The page is opened before the session runs,
so what it shows came live, from the stream and the thread's log.

Screenshots: `viewer-session.png` in KEEL_TEST_ARTIFACTS, else in `artifacts/` under the
test's tmp path (tests/browser.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.async_api import Browser

from brain.service import Brain
from hands import HandsHost, HandsSettings
from schemas import new_id
from session_store import EventStore
from tests.browser import Watched
from tests.nats_server import NatsServer
from tests.sandboxes import local_backend

pytestmark = pytest.mark.timeout(180)

AGENT = "worker"
MODEL = {
    "provider": "keel-scripted",
    "name": "keel-scripted",
    "options": {"usd_per_mtok_input": 3.0, "usd_per_mtok_output": 15.0},
}


@pytest.fixture
async def hands(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[HandsHost]:
    settings = HandsSettings(
        nats_url=nats_server.url,
        data_dir=tmp_path / "hands",
        backend="local",
        host_id=new_id("hands-test"),
    )
    host = HandsHost(settings, local_backend())
    await host.start()
    try:
        yield host
    finally:
        await host.close(destroy_sandboxes=True)


def tool(name: str, arguments: dict[str, Any]) -> str:
    return f"/tool {name} {json.dumps(arguments)}"


async def say(client: httpx2.AsyncClient, session_id: str, text: str) -> None:
    """Send `text` and wait for the session to finish the turn it starts."""
    posted = await client.post(
        f"/v1/sessions/{session_id}/events",
        json={"events": [{"type": "user.message", "text": text}]},
    )
    assert posted.status_code == 202, posted.text
    asked = posted.json()["head_seq"]
    for _ in range(600):
        info = (await client.get(f"/v1/sessions/{session_id}")).json()
        if info["status"] == "idle" and info["head_seq"] > asked:
            return
        assert info["status"] not in ("failed", "cancelled", "paused"), info
        await asyncio.sleep(0.05)
    raise AssertionError(f"the turn of {text!r} never ended: {info}")


# What the tool-call chart shows, lane by lane.
LANES = """(groups) => groups.map((g) => ({
  lane: g.dataset.lane,
  label: g.querySelector("text.lane-label").textContent,
  calls: Object.fromEntries([...g.querySelectorAll("rect.call")]
    .map((r) => [r.dataset.call, r.dataset.outcome])),
}))"""


CAUGHT_UP = """([lanes, calls, modelCalls]) =>
  document.querySelectorAll("#calls-chart g.lane").length === lanes &&
  document.querySelectorAll("#calls-chart rect.call").length === calls &&
  !document.querySelector("#calls-chart rect.o-open") &&
  document.querySelector("#spend-chart").dataset.calls === String(modelCalls)"""


def calls_in(lanes: dict[str, dict[str, str]]) -> int:
    return sum(len(calls) for calls in lanes.values())


async def calls_of(client: httpx2.AsyncClient, session_id: str) -> dict[str, str]:
    """Each call of a session's log, by id, with its outcome as the page words it."""
    log = (await client.get(f"/v1/sessions/{session_id}/events?limit=500")).json()["items"]
    outcomes: dict[str, str] = {}
    for event in log:
        data = event["data"]
        if event["type"] == "tool.requested":
            outcomes[data["call_id"]] = "open"
        elif event["type"] == "tool.result":
            error = "unknown" if data["outcome"] == "unknown" else "error"
            outcomes[data["call_id"]] = error if data["is_error"] else "ok"
    return outcomes


@pytest.fixture
async def key(store: EventStore) -> str:
    return (await store.create_api_key("acme", "viewer")).key


@pytest.fixture
async def client(gateway_url: str, key: str) -> AsyncIterator[httpx2.AsyncClient]:
    headers = {"authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(base_url=gateway_url, headers=headers, timeout=10) as client:
        yield client


async def create_session(client: httpx2.AsyncClient) -> str:
    """A session of a priced model with bash, which may spawn a worker thread with bash."""
    spec = {
        "model": MODEL,
        "tools": ["bash"],
        "turn_end": "idle",
        "subagents": {
            "roster": [
                {
                    "name": AGENT,
                    "description": "runs one command",
                    "spec": {"model": MODEL, "tools": ["bash"]},
                }
            ]
        },
    }
    created = await client.post("/v1/sessions", json={"title": "charts", "spec": spec})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def threads_of(
    client: httpx2.AsyncClient, store: EventStore, session_id: str
) -> list[dict[str, Any]]:
    """The session's one thread, as `GET /v1/sessions/{id}/threads` lists it."""
    threads = (await client.get(f"/v1/sessions/{session_id}/threads")).json()["items"]
    assert len(threads) == 1 and threads[0]["status"] == "idle", threads
    # A thread spawns none (depth 1): its own list is empty. Another tenant's is a 404.
    assert (await client.get(f"/v1/sessions/{threads[0]['id']}/threads")).json()["items"] == []
    other = (await store.create_api_key("globex", "viewer")).key
    elsewhere = await client.get(
        f"/v1/sessions/{session_id}/threads", headers={"authorization": f"Bearer {other}"}
    )
    assert elsewhere.status_code == 404, elsewhere.text
    return list(threads)


async def test_the_viewer_charts_a_session_s_spend_and_its_threads_calls(
    gateway_url: str,
    store: EventStore,
    key: str,
    client: httpx2.AsyncClient,
    brain: Brain,
    hands: HandsHost,
    browser: Browser,
    artifacts: Path,
) -> None:
    session_id = await create_session(client)
    watched = await Watched.open(browser)
    page = watched.page
    await page.goto(f"{gateway_url}/view/{session_id}#key={key}")
    await page.wait_for_selector("#s-stream.on")

    # Live: a call's bar shows while it runs, and takes its outcome's colour when it ends.
    slow = asyncio.create_task(say(client, session_id, tool("bash", {"command": "sleep 2"})))
    await page.wait_for_selector("#calls-chart rect.o-open")
    await slow
    await page.wait_for_selector("#calls-chart rect.o-ok")
    await say(client, session_id, tool("bash", {"command": "echo one"}))
    await say(client, session_id, tool("bash", {"command": "echo two >&2; exit 3"}))
    # A thread's call shows live too, in its lane, read from the thread's own log.
    task = tool("bash", {"command": "sleep 2; echo from the worker"})
    spawn = tool("spawn_thread", {"agent": AGENT, "task": task})
    spawning = asyncio.create_task(say(client, session_id, spawn))
    await page.wait_for_selector('#calls-chart g.lane[data-lane^="sthr_"] rect.o-open')
    await spawning

    threads = await threads_of(client, store, session_id)
    primary = (await client.get(f"/v1/sessions/{session_id}")).json()
    lanes = {session_id: await calls_of(client, session_id)}
    lanes[threads[0]["id"]] = await calls_of(client, threads[0]["id"])
    assert sorted(lanes[session_id].values()) == ["error", "ok", "ok", "ok"]  # 3 bash, a spawn
    assert list(lanes[threads[0]["id"]].values()) == ["ok"]

    sessions = [primary, *threads]
    model_calls = sum(s["turns"] for s in sessions)

    # The charts catch up with the logs: a lane per thread, a bar per call, none still open,
    # a point per model call.
    await page.wait_for_function(CAUGHT_UP, arg=[len(lanes), calls_in(lanes), model_calls])
    shown = await page.eval_on_selector_all("#calls-chart g.lane", LANES)
    assert [lane["lane"] for lane in shown] == [session_id, threads[0]["id"]]
    assert {lane["lane"]: lane["calls"] for lane in shown} == lanes
    assert shown[1]["label"].startswith(AGENT)

    # Tokens and cost: the session's own totals plus its thread's, as the gateway keeps them.
    spent = await page.eval_on_selector("#spend-chart", "(svg) => ({...svg.dataset})")
    assert int(spent["inputTokens"]) == sum(s["usage"]["input_tokens"] for s in sessions)
    assert int(spent["outputTokens"]) == sum(s["usage"]["output_tokens"] for s in sessions)
    cost = sum(s["cost_usd"] for s in sessions)
    assert cost > 0 and float(spent["costUsd"]) == pytest.approx(cost, rel=1e-9)
    assert await page.locator("#spend-chart circle.point").count() == model_calls
    assert await page.locator("#spend-chart path.tokens").count() == 1
    totals = await page.text_content("#spend-totals")
    assert totals is not None and f"${cost:.4f}" in totals

    path = await watched.screenshot(artifacts, "viewer-session")
    assert path.stat().st_size > 0
    assert await watched.problems() == []

    # Opened afterwards, the page draws the same from the log as it drew live.
    later = await Watched.open(browser)
    await later.page.goto(f"{gateway_url}/view/{session_id}#key={key}")
    await later.page.wait_for_function(CAUGHT_UP, arg=[len(lanes), calls_in(lanes), model_calls])
    assert await later.page.eval_on_selector_all("#calls-chart g.lane", LANES) == shown
    replayed = await later.page.eval_on_selector("#spend-chart", "(svg) => ({...svg.dataset})")
    assert replayed == spent
    assert await later.problems() == []
