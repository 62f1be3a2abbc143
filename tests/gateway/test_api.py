"""The HTTP API over a real socket: sessions, events, auth and errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
import msgspec

from brain.service import Brain
from gateway._app import API_DESCRIPTION
from session_store import EventStore
from tests.gateway.sse import sse

SPEC = {
    "model": {
        "provider": "scripted",
        "options": {"script": [{"text": "Hello from the agent."}, {"text": "Again."}]},
    }
}


async def wait_until(client: httpx2.AsyncClient, session_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        session: dict[str, Any] = (await client.get(f"/v1/sessions/{session_id}")).json()
        if session["status"] == status:
            return session
        assert time.monotonic() < deadline, session
        await asyncio.sleep(0.05)


async def test_create_talk_and_read_the_log(client: httpx2.AsyncClient, brain: Brain) -> None:
    created = await client.post("/v1/sessions", json={"spec": SPEC, "message": "Hi!"})
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    await wait_until(client, session_id, "completed")
    page = (await client.get(f"/v1/sessions/{session_id}/events")).json()
    types = [event["type"] for event in page["items"]]
    assert types[:3] == ["session.created", "user.message", "session.status"]
    assert "model.response" in types and types[-1] == "session.status"
    assert page["items"][1]["data"]["text"] == "Hi!"
    assert page["next_after"] is None
    # A finished session takes no more input.
    late = await client.post(
        f"/v1/sessions/{session_id}/events",
        json={"events": [{"type": "user.message", "text": "more?"}]},
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "conflict"
    # Final: clients that retry 409s by default (the official SDKs) are told not to.
    assert late.headers["x-should-retry"] == "false"


async def test_input_is_appended_in_order_and_paged(client: httpx2.AsyncClient) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    posted = await client.post(
        f"/v1/sessions/{session_id}/events",
        json={
            "events": [
                {"type": "user.message", "text": "one"},
                {"type": "user.message", "text": "two", "message_id": "m-2"},
                {"type": "user.interrupt", "reason": "stop"},
            ]
        },
    )
    assert posted.status_code == 202 and posted.json() == {"head_seq": 4}
    first = (await client.get(f"/v1/sessions/{session_id}/events?limit=2")).json()
    assert [e["seq"] for e in first["items"]] == [1, 2] and first["next_after"] == 2
    rest = (await client.get(f"/v1/sessions/{session_id}/events?after=2&limit=2")).json()
    assert [e["data"].get("text") for e in rest["items"]] == ["two", None]
    listed = (await client.get("/v1/sessions?limit=10")).json()
    assert session_id in [s["id"] for s in listed["items"]]


async def test_keys_and_tenants(client: httpx2.AsyncClient, store: EventStore) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    base = str(client.base_url)
    async with httpx2.AsyncClient(base_url=base) as anonymous:
        missing = await anonymous.get(f"/v1/sessions/{session_id}")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await anonymous.get("/v1/sessions", headers={"authorization": "Bearer keel_nobody"})
        assert wrong.status_code == 401
    other = await store.create_api_key("globex")
    headers = {"authorization": f"Bearer {other.key}"}
    async with httpx2.AsyncClient(base_url=base, headers=headers) as stranger:
        # Another tenant's session does not exist, as far as they can tell.
        assert (await stranger.get(f"/v1/sessions/{session_id}")).status_code == 404
        assert (await stranger.get(f"/v1/sessions/{session_id}/events")).status_code == 404
        listed = (await stranger.get("/v1/sessions")).json()
        assert listed["items"] == []


async def test_bad_input_gets_a_clear_error_and_writes_nothing(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    url = f"/v1/sessions/{session_id}/events"
    ONE = {"type": "user.message", "text": "x"}
    cases = [
        (await client.post(url, content=b"{not json"), 422, "not valid JSON"),
        (await client.post(url, json={"events": [{"type": "model.response"}]}), 422, "type"),
        (await client.post(url, json={"events": [{"type": "user.message"}]}), 422, "text"),
        (await client.post(url, json={"events": []}), 422, "length >= 1"),
        (await client.get(f"{url}?after={2**70}"), 422, "after"),
        (await client.post(f"/v1/sessions/{session_id}/fork", json={"at_seq": 0}), 422, "at_seq"),
        (await client.post(url, json={"events": [ONE], "extra": 1}), 422, "extra"),
        (await client.post(url, content=b"x" * 1_000_001), 413, "over"),
        (await client.post("/v1/sessions", json={"spec": {"tools": "bash"}}), 422, "tools"),
        (await client.get(f"{url}?limit=0"), 422, "limit"),
        (await client.get("/v1/sessions/ses_nope"), 404, "no session"),
        (await client.get("/v1/nothing-here"), 404, "Not Found"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert words in response.json()["error"]["message"], response.text
    assert await store.head(session_id) == 1  # nothing was written


async def test_the_openapi_document_shows_the_real_bodies(client: httpx2.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert {"CreateSession", "SessionView", "PostEvents", "EventPage", "ApiError"} <= set(schemas)
    create = document["paths"]["/v1/sessions"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateSession"
    }


async def test_the_openapi_document_says_how_to_use_the_api(client: httpx2.AsyncClient) -> None:
    info = (await client.get("/openapi.json")).json()["info"]
    assert info["description"] == API_DESCRIPTION
    assert "Idempotency-Key" in info["description"] and "Last-Event-ID" in info["description"]
    assert info["title"] == "keel" and info["summary"]


SLOW_SPEC = {
    "model": {
        "provider": "scripted",
        "options": {"script": [{"text": "thinking out loud here", "latency_ms": 300}]},
    }
}


async def test_the_stream_resumes_with_no_gap_and_no_duplicate(
    client: httpx2.AsyncClient, brain: Brain
) -> None:
    created = await client.post("/v1/sessions", json={"spec": SLOW_SPEC, "message": "go"})
    session_id = created.json()["id"]
    url = f"/v1/sessions/{session_id}/stream"
    async with client.stream("GET", url) as first:
        assert first.headers["content-type"].startswith("text/event-stream")
        head = await sse(first, limit=2)  # then the client drops the connection
    last = head[-1]["id"]
    async with client.stream("GET", url, headers={"last-event-id": last}) as resumed:
        rest = await sse(resumed)  # ends by itself once the session is over
    seqs = [int(e["id"]) for e in head + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert rest[-1]["event"] == "session.status"
    assert '"completed"' in rest[-1]["data"]
    final = (await client.get(f"/v1/sessions/{session_id}")).json()
    assert final["head_seq"] == seqs[-1]
    # Both streams ended: the dropped one too, once its client went away.
    deadline = time.monotonic() + 10
    while "keel_sse_streams 0.0" not in (await client.get("/metrics")).text:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def test_deltas_come_live_only_when_asked_for(
    client: httpx2.AsyncClient, brain: Brain
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SLOW_SPEC})).json()["id"]
    url = f"/v1/sessions/{session_id}/stream?deltas=true"
    async with client.stream("GET", url) as live:
        await client.post(
            f"/v1/sessions/{session_id}/events",
            json={"events": [{"type": "user.message", "text": "go"}]},
        )
        events = await sse(live)
    deltas = [e for e in events if e["event"] == "delta"]
    assert deltas and all("id" not in e for e in deltas)
    text = "".join(msgspec.json.decode(e["data"])["text"] for e in deltas)
    assert text.strip() == "thinking out loud here"
    async with client.stream("GET", f"/v1/sessions/{session_id}/stream") as replay:
        assert all(e["event"] != "delta" for e in await sse(replay))
    bad = await client.get(url, headers={"last-event-id": "yesterday"})
    assert bad.status_code == 422


async def test_health_and_readiness(client: httpx2.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"ok": True}
    assert (await client.get("/readyz")).json() == {"ok": True}


async def test_a_fork_goes_back_in_time_and_runs_on_its_own(
    client: httpx2.AsyncClient, brain: Brain
) -> None:
    created = await client.post("/v1/sessions", json={"spec": SPEC, "message": "first"})
    parent = created.json()["id"]
    await wait_until(client, parent, "completed")
    # Back to just after the user's message: the fork answers it anew (the scripted model
    # plays its first turn again), and the parent's log is left as it was.
    forked = await client.post(f"/v1/sessions/{parent}/fork", json={"at_seq": 2})
    assert forked.status_code == 201, forked.text
    child = forked.json()["id"]
    done = await wait_until(client, child, "completed")
    events = (await client.get(f"/v1/sessions/{child}/events")).json()["items"]
    assert [e["type"] for e in events[:3]] == ["session.created", "user.message", "session.forked"]
    assert events[2]["data"]["parent_session_id"] == parent
    assert done["head_seq"] > 3
    assert (await client.get(f"/v1/sessions/{parent}")).json()["head_seq"] == created.json()[
        "head_seq"
    ] + 3
    too_far = await client.post(f"/v1/sessions/{parent}/fork", json={"at_seq": 999})
    assert too_far.status_code == 409 and "past the log's head" in too_far.text


async def test_pause_resume_and_cancel(client: httpx2.AsyncClient, brain: Brain) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    url = f"/v1/sessions/{session_id}"
    assert (await client.post(f"{url}/pause")).status_code == 202
    paused = await wait_until(client, session_id, "paused")
    assert paused["status_reason"] == "paused by the user"
    assert (await client.post(f"{url}/pause")).status_code == 409
    assert (await client.post(f"{url}/resume")).status_code == 202
    await wait_until(client, session_id, "waiting")  # for the user's first message
    assert (await client.post(f"{url}/cancel")).status_code == 202
    await wait_until(client, session_id, "cancelled")
    for verb in ("pause", "resume", "cancel"):
        refused = await client.post(f"{url}/{verb}")
        assert refused.status_code == 409, verb
        assert "the session is cancelled" in refused.json()["error"]["message"]


async def test_metrics_count_requests_by_route_never_by_session(
    client: httpx2.AsyncClient,
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    await client.get(f"/v1/sessions/{session_id}")
    await client.get("/v1/sessions/ses_nope")
    text = (await client.get("/metrics")).text
    assert (
        'keel_http_requests_total{method="GET",route="/v1/sessions/{session_id}",status="200"} 1.0'
        in text
    )
    assert 'route="/v1/sessions/{session_id}",status="404"} 1.0' in text
    assert session_id not in text
    assert "keel_sse_streams 0.0" in text


async def test_a_retried_write_with_an_idempotency_key_is_done_once(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    headers = {"idempotency-key": "create-1"}
    first = await client.post("/v1/sessions", json={"spec": SPEC}, headers=headers)
    again = await client.post("/v1/sessions", json={"spec": SPEC}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len((await client.get("/v1/sessions")).json()["items"]) == 1
    session_id = first.json()["id"]
    body = {"events": [{"type": "user.message", "text": "once"}]}
    url = f"/v1/sessions/{session_id}/events"
    for _ in range(3):
        posted = await client.post(url, json=body, headers={"idempotency-key": "msg-1"})
        assert posted.json() == {"head_seq": 2}
    assert await store.head(session_id) == 2  # appended once
    other = await client.post(url, json={"events": []}, headers={"idempotency-key": "msg-1"})
    assert other.status_code == 422 and "different request" in other.text
    # A failed request frees its key: fixing it and retrying works.
    bad = await client.post(url, json={"events": []}, headers={"idempotency-key": "msg-2"})
    assert bad.status_code == 422
    good = await client.post(url, json=body, headers={"idempotency-key": "msg-2"})
    assert good.status_code == 202
