"""Idempotency-Key as the routes take it (`gateway._idempotency`): a key answered before is
replayed before anything else is looked at, writes sent at once with one key are done once,
and the key's own checks come first."""

from __future__ import annotations

import asyncio

import httpx2

from session_store import EventStore
from tests.gateway.test_api import SPEC


async def test_a_retried_delete_gets_its_answer_though_the_session_is_gone(
    client: httpx2.AsyncClient,
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    url = f"/v1/sessions/{session_id}"
    assert (await client.post(f"{url}/cancel")).status_code == 202  # no brain holds it
    keyed = {"idempotency-key": "delete-1"}
    first = await client.delete(url, headers=keyed)
    assert first.status_code == 204, first.text
    # The key is answered before the session is looked for: not a 404.
    again = await client.delete(url, headers=keyed)
    assert again.status_code == 204 and again.headers["idempotent-replayed"] == "true"
    assert again.content == b""
    assert (await client.delete(url)).status_code == 404  # without the key: it is gone


async def test_writes_sent_at_once_with_one_key_are_done_once(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    keyed = {"idempotency-key": "create-at-once"}
    body = {"spec": SPEC, "title": "once"}
    created = await asyncio.gather(
        *(client.post("/v1/sessions", json=body, headers=keyed) for _ in range(8))
    )
    assert {answer.status_code for answer in created} == {201}, [a.text for a in created]
    assert len({answer.content for answer in created}) == 1
    sessions = (await store.list_sessions("acme")).items
    assert [s.session_id for s in sessions] == [created[0].json()["id"]]

    url = f"/v1/sessions/{sessions[0].session_id}/events"
    message = {"events": [{"type": "user.message", "text": "once"}]}
    posted = await asyncio.gather(
        *(client.post(url, json=message, headers={"idempotency-key": "m"}) for _ in range(8))
    )
    assert {(a.status_code, a.content) for a in posted} == {(202, b'{"head_seq":2}')}
    assert await store.head(sessions[0].session_id) == 2


async def test_the_key_is_checked_before_the_api_key(client: httpx2.AsyncClient) -> None:
    anonymous = httpx2.AsyncClient(base_url=str(client.base_url))
    async with anonymous:
        for key in ("", "k" * 256):
            refused = await anonymous.post(
                "/v1/sessions", json={"spec": SPEC}, headers={"idempotency-key": key}
            )
            assert refused.status_code == 422 and "Idempotency-Key" in refused.text
        unkeyed = await anonymous.post(
            "/v1/sessions", json={"spec": SPEC}, headers={"idempotency-key": "fine"}
        )
        assert unkeyed.status_code == 401
