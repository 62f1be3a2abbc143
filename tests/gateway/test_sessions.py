"""Sessions as a resource over a real socket: what GET shows, listing by time, deletion,
input queued while the agent is busy."""

from __future__ import annotations

import asyncio
import time

import httpx2
import nats

from brain.service import Brain
from schemas import SessionStatus, log_subject
from session_store import EventStore
from tests.gateway.test_api import SPEC, wait_until
from tests.nats_server import NatsServer

COUNTED_SPEC = {
    "model": {
        "provider": "scripted",
        "options": {
            "script": [
                {"text": "one", "input_tokens": 120, "output_tokens": 7},
                {"text": "two", "input_tokens": 300, "output_tokens": 11},
            ]
        },
    }
}


async def test_a_session_shows_its_title_metadata_and_totals(
    client: httpx2.AsyncClient, brain: Brain
) -> None:
    created = await client.post(
        "/v1/sessions",
        json={
            "spec": COUNTED_SPEC,
            "title": "triage",
            "metadata": {"ticket": "T-1"},
            "message": "first",
        },
    )
    session_id = created.json()["id"]
    assert created.json()["title"] == "triage" and created.json()["turns"] == 0
    await wait_until(client, session_id, "completed")
    session = (await client.get(f"/v1/sessions/{session_id}")).json()
    assert session["title"] == "triage" and session["metadata"] == {"ticket": "T-1"}
    assert session["usage"] == {"input_tokens": 120, "output_tokens": 7}
    assert session["turns"] == 1 and session["cost_usd"] == 0.0
    listed = (await client.get("/v1/sessions")).json()["items"]
    assert listed == [session]


async def test_sessions_are_listed_by_status_and_creation_time(
    client: httpx2.AsyncClient,
) -> None:
    first = (await client.post("/v1/sessions", json={"spec": SPEC})).json()
    await asyncio.sleep(0.02)
    second = (await client.post("/v1/sessions", json={"spec": SPEC})).json()
    middle = (first["created_at"] + second["created_at"]) / 2

    async def ids(**params: object) -> list[str]:
        page = await client.get("/v1/sessions", params=params)
        assert page.status_code == 200, page.text
        return [s["id"] for s in page.json()["items"]]

    assert await ids(created_after=middle) == [second["id"]]
    assert await ids(created_before=middle) == [first["id"]]
    assert await ids(created_after=first["created_at"], status="idle") == [
        second["id"],
        first["id"],
    ]
    assert await ids(status="completed") == []
    assert await ids(created_after=time.time() + 60) == []
    bad = await client.get("/v1/sessions", params={"created_after": "yesterday"})
    assert bad.status_code == 422 and "created_after" in bad.json()["error"]["message"]


async def test_only_a_finished_session_can_be_deleted(
    client: httpx2.AsyncClient, brain: Brain, store: EventStore
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    url = f"/v1/sessions/{session_id}"
    refused = await client.delete(url)
    assert refused.status_code == 409 and "only a finished session" in refused.text
    await client.post(f"{url}/cancel")
    await wait_until(client, session_id, "cancelled")
    deadline = time.monotonic() + 10
    while (deleted := await client.delete(url)).status_code == 409:
        # Its brain may still be letting go of it; that is a 409 the client retries.
        assert "still recording" in deleted.text and time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert deleted.status_code == 204 and deleted.content == b""
    for gone in (client.get(url), client.get(f"{url}/events"), client.delete(url)):
        assert (await gone).status_code == 404
    assert (await client.get("/v1/sessions")).json()["items"] == []


async def test_another_tenant_cannot_delete_a_session(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    await store.append_input(session_id, [SessionStatus(status="completed")])
    other = await store.create_api_key("globex")
    headers = {"authorization": f"Bearer {other.key}"}
    async with httpx2.AsyncClient(base_url=str(client.base_url), headers=headers) as stranger:
        assert (await stranger.delete(f"/v1/sessions/{session_id}")).status_code == 404
    assert (await client.get(f"/v1/sessions/{session_id}")).json()["status"] == "completed"


BUSY_SPEC = {
    "model": {
        "provider": "scripted",
        "options": {
            "script": [
                {"text": "answering the first", "latency_ms": 400},
                {"text": "answering the second and third"},
            ]
        },
    }
}


async def test_input_sent_while_the_agent_is_busy_is_queued_in_order(
    client: httpx2.AsyncClient, brain: Brain
) -> None:
    created = await client.post("/v1/sessions", json={"spec": BUSY_SPEC, "message": "first"})
    session_id = created.json()["id"]
    url = f"/v1/sessions/{session_id}"
    await wait_until(client, session_id, "running")  # the model is thinking
    for text in ("second", "third"):
        posted = await client.post(
            f"{url}/events", json={"events": [{"type": "user.message", "text": text}]}
        )
        assert posted.status_code == 202
    await wait_until(client, session_id, "completed")
    events = (await client.get(f"{url}/events")).json()["items"]
    said = [
        (e["type"], e["data"].get("text") or e["data"]["content"][0]["text"])
        for e in events
        if e["type"] in ("user.message", "model.response")
    ]
    # The first answer is kept (it was paid for) and says what it saw; the input that came
    # while it was being written is answered next, once, in order.
    assert said == [
        ("user.message", "first"),
        ("user.message", "second"),
        ("user.message", "third"),
        ("model.response", "answering the first"),
        ("model.response", "answering the second and third"),
    ]
    first_seq = next(e["seq"] for e in events if e["data"].get("text") == "first")
    responses = [e for e in events if e["type"] == "model.response"]
    assert responses[0]["data"]["context_seq"] == first_seq + 1  # and its "running"
    assert responses[1]["data"]["context_seq"] >= responses[0]["seq"]


async def test_input_tells_live_streams_the_log_grew(
    client: httpx2.AsyncClient, nats_server: NatsServer
) -> None:
    """Streams learn of input at once, not on their next poll: the gateway says so on NATS,
    as brains do after their commits."""
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    nc = await nats.connect(nats_server.url)
    try:
        told = await nc.subscribe(log_subject(session_id))
        await nc.flush()
        posted = await client.post(
            f"/v1/sessions/{session_id}/events",
            json={"events": [{"type": "user.message", "text": "hi"}]},
        )
        message = await told.next_msg(timeout=5)
        assert int(message.data) == posted.json()["head_seq"] == 2
    finally:
        await nc.drain()


async def test_a_whole_number_written_as_a_float_is_taken_and_a_fraction_is_not(
    client: httpx2.AsyncClient,
) -> None:
    """JSON, and the JSON Schema the OpenAPI shows, do not tell 1.0 from 1."""
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    url = f"/v1/sessions/{session_id}/fork"
    assert (await client.post(url, content=b'{"at_seq": 1.0}')).status_code == 201
    refused = await client.post(url, content=b'{"at_seq": 1.5}')
    assert refused.status_code == 422 and "at_seq" in refused.json()["error"]["message"]


async def test_a_wrong_method_names_every_method_the_path_takes(
    client: httpx2.AsyncClient,
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    wrong = await client.put(f"/v1/sessions/{session_id}")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["allow"] == "DELETE, GET"


async def test_a_tenant_cannot_point_the_brain_and_its_keys_at_a_server_it_chose(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    """Off by default: with both, the brain would send the key it holds for
    `AWS_SECRET_ACCESS_KEY` (or the provider's own key) to the tenant's server."""
    leaky = [
        ("spec.model.base_url", {"model": {"provider": "openai", "base_url": "http://evil.test"}}),
        ("spec.model.api_key_env", {"model": {"provider": "openai", "api_key_env": "HOME"}}),
        (
            "spec.model.options.api_key_env",
            {"model": {"provider": "openai", "options": {"api_key_env": "HOME"}}},
        ),
        (
            "spec.completion.judge_model.base_url",
            {
                "completion": {
                    "kind": "judge",
                    "criteria": "done",
                    "judge_model": {"provider": "anthropic", "base_url": "http://evil.test"},
                }
            },
        ),
        (
            "spec.context.summary_model.api_key_env",
            {"context": {"summary_model": {"provider": "openai", "api_key_env": "HOME"}}},
        ),
        (
            "spec.subagents.roster[0].spec.model.api_key_env",
            {
                "subagents": {
                    "roster": [
                        {
                            "name": "w",
                            "spec": {"model": {"provider": "openai", "api_key_env": "HOME"}},
                        }
                    ]
                }
            },
        ),
    ]
    for field, spec in leaky:
        answer = await client.post("/v1/sessions", json={"spec": spec, "message": "hi"})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["message"].startswith(field)
    assert (await store.list_sessions("acme")).items == []
