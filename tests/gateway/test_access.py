"""Who may see what (`gateway._access`), and in which order a request's faults are named:
a malformed query first (422), then the API key (401), then the session (404)."""

from __future__ import annotations

import httpx2

from session_store import EventStore
from tests.gateway.test_api import SPEC


async def test_a_malformed_query_is_named_before_the_key_or_the_session(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    stranger = (await store.create_api_key("globex")).key
    base = str(client.base_url)
    malformed = [
        "/v1/sessions?limit=0",
        f"/v1/sessions/{session_id}/events?after=-1",
        f"/v1/sessions/{session_id}/audit?seq=0",
        f"/v1/sessions/{session_id}/stream?after=-1",
    ]
    for authorization in (None, "Bearer keel_nobody", f"Bearer {stranger}"):
        headers = {"authorization": authorization} if authorization else {}
        async with httpx2.AsyncClient(base_url=base, headers=headers) as other:
            for url in malformed:
                answer = await other.get(url)
                assert answer.status_code == 422, (authorization, url, answer.text)
                assert answer.json()["error"]["code"] == "invalid"
            # Well-formed: the key (or the session's owner) decides.
            answer = await other.get(f"/v1/sessions/{session_id}/events?after=0")
            assert answer.status_code == (404 if authorization == f"Bearer {stranger}" else 401)
