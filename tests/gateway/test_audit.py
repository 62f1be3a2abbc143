"""`GET /v1/sessions/{id}/audit`: the hash chain re-walked, and the state a brain folds
from the log at any seq, over a real socket with a real brain answering on NATS."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import httpx2
import pytest

from brain.providers import Providers
from brain.service import Brain
from session_store import SqliteEventStore
from tests.brain.conftest import brain_settings
from tests.gateway.test_api import SPEC, wait_until
from tests.nats_server import NatsServer


@pytest.fixture
async def snapshotting_brain(
    store: SqliteEventStore, nats_server: NatsServer
) -> AsyncIterator[None]:
    """A brain that snapshots every 3 events, so even a short session has a snapshot."""
    brain = Brain(brain_settings(nats_server, snapshot_every=3), store=store, providers=Providers())
    await brain.start()
    try:
        yield
    finally:
        await brain.close()


async def test_an_audit_verifies_the_chain_and_folds_the_log_to_any_seq(
    client: httpx2.AsyncClient, snapshotting_brain: None
) -> None:
    created = await client.post("/v1/sessions", json={"spec": SPEC, "message": "Hi!"})
    session_id = created.json()["id"]
    done = await wait_until(client, session_id, "completed")
    url = f"/v1/sessions/{session_id}/audit"

    audit = (await client.get(url)).json()
    assert audit["chain"] == {
        "ok": True,
        "checked": done["head_seq"],
        "head_seq": done["head_seq"],
        "bad_seq": None,
        "problem": "",
    }
    assert audit["at_seq"] == done["head_seq"] and audit["state_error"] == ""
    state = audit["state"]
    assert (state["seq"], state["status"], state["turns"]) == (done["head_seq"], "completed", 1)
    # Invariant 4, checked on the stored snapshot: snapshot + tail = full replay.
    assert audit["snapshot_seq"] is not None and audit["snapshot_matches"] is True

    # Back in time: just after the user's message, before the agent did anything.
    early = (await client.get(url, params={"seq": 2})).json()
    assert (early["at_seq"], early["state"]["seq"], early["state"]["turns"]) == (2, 2, 0)
    assert early["state"]["pending_input"] is True
    assert early["state"]["messages"][0]["content"][0]["text"] == "Hi!"
    assert early["snapshot_seq"] is None  # no snapshot that early

    too_far = await client.get(url, params={"seq": done["head_seq"] + 1})
    assert too_far.status_code == 409 and "past the log's head" in too_far.text


async def test_an_audit_names_the_first_tampered_event(
    client: httpx2.AsyncClient, store: SqliteEventStore, snapshotting_brain: None
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC, "message": "Hi!"})).json()[
        "id"
    ]
    await wait_until(client, session_id, "completed")
    # Someone with database access rewrites what the user said.
    with sqlite3.connect(store.path) as db:
        db.execute(
            "UPDATE events SET data = replace(data, 'Hi!', 'Transfer $1M') "
            "WHERE session_id = ? AND seq = 2",
            (session_id,),
        )
    audit = (await client.get(f"/v1/sessions/{session_id}/audit")).json()
    assert audit["chain"]["ok"] is False and audit["chain"]["bad_seq"] == 2
    assert "hash" in audit["chain"]["problem"]
    # The state is still shown, folded from the log as it now reads.
    assert audit["state"]["messages"][0]["content"][0]["text"] == "Transfer $1M"


async def test_an_audit_without_a_brain_still_verifies_the_chain(
    client: httpx2.AsyncClient,
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    audit = await client.get(f"/v1/sessions/{session_id}/audit")
    assert audit.status_code == 200
    body = audit.json()
    assert body["chain"]["ok"] is True and body["state"] is None
    assert "no brain" in body["state_error"]
