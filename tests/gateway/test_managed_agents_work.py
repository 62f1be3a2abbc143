"""Self-hosted environments against keel: the `environments.work` protocol over plain HTTP,
and the official SDK's own `EnvironmentWorker` and `events.tool_runner`, unmodified, running
the tools of keel sessions. Real HTTP, NATS, store and brain; the only stand-in is the model
(`keel-scripted`: a message `/tool NAME {json}` makes it call NAME).

Whatever the workers do (run, die mid-call, come back after their lease went to another),
every call ends with exactly one result in the log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic import AsyncAnthropic
from anthropic.lib.tools import beta_async_tool

from brain.service import Brain
from schemas import ToolResult
from session_store import EventStore
from tests.gateway.conftest import WORK_LEASE_S
from tests.gateway.test_managed_agents import MODEL, send_text

BETA = {"anthropic-beta": "managed-agents-2026-04-01"}
MANAGED_PATHS = ("/v1/environments", "/v1/agents", "/managed-agents/", "/v1/webhook_endpoint")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def sdk(gateway_url: str, store: EventStore, brain: Brain) -> AsyncIterator[AsyncAnthropic]:
    key = await store.create_api_key("acme", "sdk")
    client = AsyncAnthropic(base_url=gateway_url, api_key=key.key, max_retries=0)
    try:
        yield client
    finally:
        await client.close()


async def self_hosted(client: httpx2.AsyncClient) -> tuple[str, str]:
    """A self-hosted environment and a key for its worker."""
    env = await client.post(
        "/v1/environments", json={"name": "mine", "config": {"type": "self_hosted"}}
    )
    made = await client.post(f"/v1/environments/{env.json()['id']}/keys", json={"name": "ci"})
    assert made.status_code == 200, made.text
    assert made.json()["type"] == "environment_key"
    return env.json()["id"], made.json()["key"]


async def sdk_self_hosted(sdk: AsyncAnthropic) -> tuple[str, str]:
    env = await sdk.beta.environments.create(name="mine", config={"type": "self_hosted"})
    made = await sdk.post(f"/v1/environments/{env.id}/keys", body={}, cast_to=httpx2.Response)
    return env.id, made.json()["key"]


async def session_calling(client: httpx2.AsyncClient, environment_id: str, text: str) -> str:
    """A session of a toolset agent in the environment, asked `text` (over plain HTTP)."""
    agent = await client.post(
        "/v1/agents",
        json={"name": "t", "model": MODEL, "tools": [{"type": "agent_toolset_20260401"}]},
    )
    session = await client.post(
        "/v1/sessions",
        headers=BETA,
        json={"agent": agent.json()["id"], "environment_id": environment_id},
    )
    session_id: str = session.json()["id"]
    sent = await client.post(
        f"/v1/sessions/{session_id}/events",
        headers=BETA,
        json={"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]},
    )
    assert sent.status_code == 200, sent.text
    return session_id


def as_worker(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def poll(client: httpx2.AsyncClient, environment_id: str, key: str) -> Any:
    """Poll (long, as the SDK does) until an item comes, for up to 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        polled = await client.get(
            f"/v1/environments/{environment_id}/work/poll",
            params={"block_ms": 999},
            headers={**as_worker(key), "anthropic-worker-id": "tests"},
        )
        assert polled.status_code == 200, polled.text
        if polled.json() is not None:
            return polled.json()
    raise AssertionError("no work came")


def results_in(records: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        if isinstance(record.event, ToolResult):
            counts[record.event.call_id] = counts.get(record.event.call_id, 0) + 1
    return counts


async def until(condition: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if await condition():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def turn_ended(sdk: AsyncAnthropic, session_id: str, turns: int) -> bool:
    """Whether the session is idle after `turns` turns ended (`end_turn`)."""
    ends = [
        e
        async for e in sdk.beta.sessions.events.list(session_id)
        if e.type == "session.status_idle" and e.stop_reason.type == "end_turn"
    ]
    session = await sdk.beta.sessions.retrieve(session_id)
    return len(ends) >= turns and session.status == "idle"


async def replies(sdk: AsyncAnthropic, session_id: str) -> list[str]:
    return [
        e.content[0].text
        async for e in sdk.beta.sessions.events.list(session_id)
        if e.type == "agent.message"
    ]


# -- the protocol over plain HTTP -------------------------------------------------------------


async def test_an_empty_queue_answers_json_null_and_bad_input_is_a_clear_4xx(
    client: httpx2.AsyncClient,
) -> None:
    environment_id, key = await self_hosted(client)
    work = f"/v1/environments/{environment_id}/work"
    empty = await client.get(f"{work}/poll", headers=as_worker(key))
    assert empty.status_code == 200 and empty.content == b"null"
    assert empty.headers["content-type"] == "application/json"
    started = time.monotonic()
    blocked = await client.get(f"{work}/poll", params={"block_ms": 400}, headers=as_worker(key))
    assert blocked.json() is None and time.monotonic() - started >= 0.4

    def refused(response: httpx2.Response, status: int, error_type: str) -> None:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == error_type
        assert body["error"]["message"]

    for block_ms in (0, 1000, "soon"):
        bad = await client.get(
            f"{work}/poll", params={"block_ms": block_ms}, headers=as_worker(key)
        )
        refused(bad, 422, "invalid_request_error")
    long_id = {**as_worker(key), "anthropic-worker-id": "w" * 129}
    refused(await client.get(f"{work}/poll", headers=long_id), 422, "invalid_request_error")
    # The API key does not poll, and the environment key serves nothing but its worker.
    refused(await client.get(f"{work}/poll"), 403, "permission_error")
    refused(await client.get("/v1/agents", headers=as_worker(key)), 403, "permission_error")
    other, _ = await self_hosted(client)
    refused(
        await client.get(f"/v1/environments/{other}/work/poll", headers=as_worker(key)),
        404,
        "not_found_error",
    )
    refused(
        await client.get(f"{work}/poll", headers=as_worker("keel_env_nope")),
        401,
        "authentication_error",
    )
    cloud = (await client.post("/v1/environments", json={"name": "c"})).json()["id"]
    refused(await client.post(f"/v1/environments/{cloud}/keys"), 409, "conflict_error")
    # Final, but not bad input: once updated to self-hosted, the cloud one has a queue.
    no_queue = await client.get(f"/v1/environments/{cloud}/work/stats")
    refused(no_queue, 409, "conflict_error")
    assert no_queue.headers["x-should-retry"] == "false"
    refused(
        await client.post(f"/v1/environments/{environment_id}/keys", json={"nme": "x"}),
        422,
        "invalid_request_error",
    )
    refused(
        await client.post(f"{work}/work_nope/ack", headers=as_worker(key)),
        404,
        "not_found_error",
    )
    refused(
        await client.post(f"{work}/work_nope/stop", content=b"{", headers=as_worker(key)),
        422,
        "invalid_request_error",
    )
    refused(
        await client.post(
            f"{work}/work_nope/heartbeat",
            params={"desired_ttl_seconds": 0},
            headers=as_worker(key),
        ),
        422,
        "invalid_request_error",
    )
    refused(
        await client.post(f"{work}/work_nope", json={"metadata": {"": "x"}}),
        422,
        "invalid_request_error",
    )
    refused(
        await client.get(work, params={"limit": 0}, headers=as_worker(key)),
        422,
        "invalid_request_error",
    )
    # `poll` and `stats` name no item: a POST there updates none.
    for name in ("poll", "stats"):
        wrong = await client.post(f"{work}/{name}", json={"metadata": {}})
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET", wrong.text
    stats = await client.get(f"{work}/stats", headers=as_worker(key))
    assert stats.json() == {
        "type": "work_queue_stats",
        "depth": 0,
        "pending": 0,
        "oldest_queued_at": None,
        "workers_polling": 0,
    }


async def test_the_openapi_document_shows_the_work_queue_and_the_key_each_route_takes(
    client: httpx2.AsyncClient,
) -> None:
    """Each Managed Agents operation's security says which key it takes, and the other kind
    of key gets the documented 403; the work routes answer the SDK's own models."""
    document = (await client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert {"bearerAuth", "environmentKey"} <= set(schemes)
    work = "/v1/environments/{environment_id}/work"
    paths = document["paths"]
    poll_answer = paths[f"{work}/poll"]["get"]["responses"]["200"]["content"]
    assert poll_answer["application/json"]["schema"] == {
        "anyOf": [{"$ref": "#/components/schemas/BetaSelfHostedWork"}, {"type": "null"}]
    }
    heartbeat = paths[f"{work}/{{work_id}}/heartbeat"]["post"]["responses"]
    mismatch = heartbeat["412"]["content"]["application/json"]["schema"]["allOf"][1]
    details = mismatch["properties"]["error"]["properties"]["details"]["$ref"]
    assert details.endswith("/BetaHeartbeatPreconditionFailedErrorDetails")
    assert "BetaWorkLeaseState" in document["components"]["schemas"]
    assert "WebhookEndpointView" in document["components"]["schemas"]

    _, key = await self_hosted(client)
    api_key = {"authorization": client.headers["authorization"]}
    takes: dict[str, set[str]] = {}
    for template, operations in paths.items():
        for method, operation in operations.items():
            if not template.startswith(MANAGED_PATHS):
                continue
            keys = {name for requirement in operation["security"] for name in requirement}
            # Ids of nothing: the key is looked at first, and nothing is made or changed.
            path = template.replace("{environment_id}", "env_nope")
            path = path.replace("{session_id}", "sesn_nope").replace("{agent_id}", "agent_nope")
            path = path.replace("{work_id}", "work_nope")
            for scheme, headers in (("bearerAuth", api_key), ("environmentKey", as_worker(key))):
                response = await client.request(method, path, headers=headers)
                label = f"{method.upper()} {template} with {scheme}"
                assert response.status_code < 500, (label, response.text)
                assert (response.status_code == 403) == (scheme not in keys), (label, response.text)
                assert str(response.status_code) in operation["responses"], label
            takes[f"{method.upper()} {template}"] = keys
    assert takes[f"GET {work}/poll"] == {"environmentKey"}
    assert takes[f"GET {work}/{{work_id}}"] == {"bearerAuth"}
    assert takes[f"POST {work}/{{work_id}}/stop"] == {"bearerAuth", "environmentKey"}
    assert paths["/v1/webhook_endpoint"]["put"]["security"] == [{"bearerAuth": []}]


async def test_a_heartbeat_that_does_not_name_the_last_one_is_a_412(
    client: httpx2.AsyncClient, brain: Brain
) -> None:
    environment_id, key = await self_hosted(client)
    work = f"/v1/environments/{environment_id}/work"
    worker = as_worker(key)
    session_id = await session_calling(client, environment_id, '/tool bash {"command": "true"}')
    item = await poll(client, environment_id, key)
    assert (item["type"], item["state"], item["environment_id"]) == (
        "work",
        "queued",
        environment_id,
    )
    assert item["data"] == {"type": "session", "id": session_id}
    assert item["metadata"] == {} and item["secret"] is None
    assert (await client.get(f"{work}/poll", headers=worker)).json() is None  # handed out
    wid = item["id"]

    acked = await client.post(f"{work}/{wid}/ack", headers=worker)
    assert acked.json()["state"] == "starting" and acked.json()["acknowledged_at"]
    assert (await client.post(f"{work}/{wid}/ack", headers=worker)).json() == acked.json()

    async def beat(expected: str) -> httpx2.Response:
        return await client.post(
            f"{work}/{wid}/heartbeat", params={"expected_last_heartbeat": expected}, headers=worker
        )

    first = await beat("NO_HEARTBEAT")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["type"], body["lease_extended"], body["state"]) == (
        "work_heartbeat",
        True,
        "active",
    )
    assert body["ttl_seconds"] == WORK_LEASE_S and body["last_heartbeat"].endswith("Z")
    for stale in ("NO_HEARTBEAT", "not a time", "2026-01-01T00:00:00Z"):
        refused = await beat(stale)
        assert refused.status_code == 412, refused.text
        error = refused.json()["error"]
        assert refused.json()["type"] == "error" and error["message"]
        assert error["details"] == {
            "error_code": "heartbeat_precondition_failed",
            "current_state": {
                "last_heartbeat": body["last_heartbeat"],
                "lease_extended": False,
                "state": "active",
                "ttl_seconds": WORK_LEASE_S,
            },
        }
    second = (await beat(body["last_heartbeat"])).json()
    assert second["lease_extended"] and second["last_heartbeat"] > body["last_heartbeat"]

    # Retrieve and update take the API key; list the worker's.
    shown = (await client.get(f"{work}/{wid}")).json()
    assert shown["state"] == "active" and shown["latest_heartbeat_at"] == second["last_heartbeat"]
    assert (await client.get(f"{work}/{wid}", headers=worker)).status_code == 403
    updated = await client.post(f"{work}/{wid}", json={"metadata": {"host": "ci", "x": "1"}})
    updated = await client.post(f"{work}/{wid}", json={"metadata": {"x": None}})
    assert updated.json()["metadata"] == {"host": "ci"}
    listed = (await client.get(work, headers=worker)).json()
    assert [w["id"] for w in listed["data"]] == [wid] and listed["next_page"] is None

    # A graceful stop reaches the worker through its next heartbeat; then it stops it.
    stopping = await client.post(f"{work}/{wid}/stop", json={"force": False}, headers=worker)
    assert stopping.json()["state"] == "stopping" and stopping.json()["stop_requested_at"]
    told = (await beat("anything")).json()
    assert (told["lease_extended"], told["state"]) == (False, "stopping")
    stopped = await client.post(f"{work}/{wid}/stop", json={"force": True}, headers=worker)
    assert stopped.json()["state"] == "stopped" and stopped.json()["stopped_at"]
    again = await client.post(f"{work}/{wid}/stop", headers=worker)
    assert again.status_code == 409 and again.headers["x-should-retry"] == "false"
    # The session still waits on a worker: the queue makes it a new item.
    fresh = await poll(client, environment_id, key)
    assert fresh["id"] != wid and fresh["data"]["id"] == session_id


# -- the SDK's own worker and runner ------------------------------------------------------------


async def test_the_sdks_worker_runs_each_call_of_a_session_once(
    sdk: AsyncAnthropic, store: EventStore, tmp_path: Path
) -> None:
    environment_id, key = await sdk_self_hosted(sdk)
    agent = await sdk.beta.agents.create(
        name="worked", model=MODEL, tools=[{"type": "agent_toolset_20260401"}]
    )
    session = await sdk.beta.sessions.create(environment_id=environment_id, agent=agent.id)
    worker = sdk.beta.environments.work.worker(
        environment_id=environment_id, environment_key=key, workdir=tmp_path, max_idle=1.0
    )
    running = asyncio.create_task(worker.run())
    try:
        await send_text(sdk, session.id, '/tool bash {"command": "echo from the worker"}')
        await until(lambda: turn_ended(sdk, session.id, 1), "the first turn")
        await send_text(
            sdk, session.id, '/tool write {"file_path": "note.txt", "content": "written"}'
        )
        await until(lambda: turn_ended(sdk, session.id, 2), "the second turn")
        # The worker lets go of the session once it has been idle for max_idle.
        work = anthropic.AsyncAnthropic(base_url=str(sdk.base_url), auth_token=key)
        async with work:

            async def all_stopped() -> bool:
                items = [i async for i in work.beta.environments.work.list(environment_id)]
                return bool(items) and all(i.state == "stopped" for i in items)

            await until(all_stopped, "the worker to stop its items")
            stats = await work.beta.environments.work.stats(environment_id)
            assert (stats.depth, stats.pending, stats.workers_polling) == (0, 0, 1)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    said = await replies(sdk, session.id)
    assert said[0].startswith("bash returned: ") and "from the worker" in said[0]
    assert said[1].startswith("write returned: ")
    assert (tmp_path / "note.txt").read_text() == "written"
    assert sorted(results_in(await store.read(session.id)).values()) == [1, 1]
    types = [e.type async for e in sdk.beta.sessions.events.list(session.id)]
    assert types.count("user.tool_result") == 2 and "agent.tool_result" not in types


async def test_the_sdks_tool_runner_answers_builtin_and_custom_calls(
    sdk: AsyncAnthropic, store: EventStore
) -> None:
    env = await sdk.beta.environments.create(name="mine", config={"type": "self_hosted"})
    agent = await sdk.beta.agents.create(
        name="both",
        model=MODEL,
        tools=[
            {"type": "agent_toolset_20260401"},
            {
                "type": "custom",
                "name": "lookup",
                "description": "Look a word up.",
                "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}},
            },
        ],
    )
    session = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)

    @beta_async_tool
    async def bash(command: str) -> str:
        """Run a shell command."""
        return f"ran {command}"

    @beta_async_tool
    async def lookup(word: str) -> str:
        """Look a word up."""
        return f"{word}: the bottom of a ship"

    calls = []

    async def run() -> None:
        runner = sdk.beta.sessions.events.tool_runner(
            session.id, tools=[bash, lookup], max_idle=3.0
        )
        async for call in runner:
            calls.append(call)

    running = asyncio.create_task(run())
    await send_text(sdk, session.id, '/tool bash {"command": "ls"}')
    await until(lambda: turn_ended(sdk, session.id, 1), "the first turn")
    await send_text(sdk, session.id, '/tool lookup {"word": "keel"}')
    await until(lambda: turn_ended(sdk, session.id, 2), "the second turn")
    # Idle past max_idle, the runner ends by itself.
    await asyncio.wait_for(running, timeout=30)
    assert [(c.name, c.posted, c.is_error) for c in calls] == [
        ("bash", True, False),
        ("lookup", True, False),
    ]
    assert calls[0].result is not None and calls[0].result["type"] == "user.tool_result"
    assert calls[1].result is not None and calls[1].result["type"] == "user.custom_tool_result"
    assert await replies(sdk, session.id) == [
        "bash returned: ran ls",
        "lookup returned: keel: the bottom of a ship",
    ]
    assert sorted(results_in(await store.read(session.id)).values()) == [1, 1]


def start_worker(
    url: str, environment_id: str, key: str, tmp_path: Path
) -> subprocess.Popen[bytes]:
    with (tmp_path / "worker.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.gateway.work_worker",
                url,
                environment_id,
                key,
                str(tmp_path / "started"),
                str(tmp_path / "release"),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def second_worker(
    sdk: AsyncAnthropic, environment_id: str, key: str, ran: list[str]
) -> asyncio.Task[None]:
    @beta_async_tool
    async def bash(command: str) -> str:
        """Run a shell command."""
        ran.append(command)
        return "from the second worker"

    worker = sdk.beta.environments.work.worker(
        environment_id=environment_id, environment_key=key, tools=[bash], max_idle=1.0
    )
    return asyncio.create_task(worker.run())


async def a_call_held_by(
    sdk: AsyncAnthropic, gateway_url: str, tmp_path: Path
) -> tuple[str, str, str, subprocess.Popen[bytes]]:
    """A session whose one call the worker in another process is running."""
    environment_id, key = await sdk_self_hosted(sdk)
    agent = await sdk.beta.agents.create(
        name="crashy", model=MODEL, tools=[{"type": "agent_toolset_20260401"}]
    )
    session = await sdk.beta.sessions.create(environment_id=environment_id, agent=agent.id)
    first = start_worker(gateway_url, environment_id, key, tmp_path)
    await send_text(sdk, session.id, '/tool bash {"command": "echo once"}')

    async def started() -> bool:
        assert first.poll() is None, (tmp_path / "worker.log").read_text()
        return (tmp_path / "started").exists()

    await until(started, "the first worker to run the call")
    return environment_id, key, session.id, first


@pytest.mark.slow
async def test_a_worker_killed_mid_call_loses_its_item_to_another_and_the_call_has_one_result(
    sdk: AsyncAnthropic, store: EventStore, gateway_url: str, tmp_path: Path
) -> None:
    environment_id, key, session_id, first = await a_call_held_by(sdk, gateway_url, tmp_path)
    ran: list[str] = []
    second = await second_worker(sdk, environment_id, key, ran)
    try:
        # The first worker heartbeats: the second polls all along and gets nothing.
        await asyncio.sleep(WORK_LEASE_S * 1.5)
        assert ran == []
        first.send_signal(signal.SIGKILL)
        first.wait()
        await until(lambda: turn_ended(sdk, session_id, 1), "the second worker to answer")
    finally:
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
    assert ran == ["echo once"]
    assert await replies(sdk, session_id) == ["bash returned: from the second worker"]
    assert list(results_in(await store.read(session_id)).values()) == [1]


@pytest.mark.slow
async def test_a_worker_that_comes_back_after_losing_its_lease_adds_no_second_result(
    sdk: AsyncAnthropic, store: EventStore, gateway_url: str, tmp_path: Path
) -> None:
    """Frozen mid-call (SIGSTOP: a paused VM, a long GC), the first worker loses its item to
    a second, which answers; thawed, with its call now finished, it is refused."""
    environment_id, key, session_id, first = await a_call_held_by(sdk, gateway_url, tmp_path)
    os.kill(first.pid, signal.SIGSTOP)
    ran: list[str] = []
    second = await second_worker(sdk, environment_id, key, ran)
    try:
        await until(lambda: turn_ended(sdk, session_id, 1), "the second worker to answer")
        (tmp_path / "release").touch()
        os.kill(first.pid, signal.SIGCONT)
        # Time for the first worker to send its result, had it kept the lease.
        await asyncio.sleep(WORK_LEASE_S)
        assert first.poll() is None, (tmp_path / "worker.log").read_text()
    finally:
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        first.kill()
        first.wait()
    assert ran == ["echo once"]
    assert await replies(sdk, session_id) == ["bash returned: from the second worker"]
    assert list(results_in(await store.read(session_id)).values()) == [1]
    # It did come back, and was refused: its heartbeat (412), or its result (409).
    told = (tmp_path / "worker.log").read_text()
    assert "lease lost" in told or "failed to send tool result" in told, told
