"""A keyed write whose gateway is SIGKILLed at each step: before the effect, after it
committed, and with the answer ready but not sent. A retry against a fresh gateway does the
write exactly once and gets the same answer every time, on both store backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from schemas import AgentSpec, SessionCreated, UserMessage
from session_store import EventStore
from tests.backends import Backend, PostgresBackend, SqliteBackend
from tests.gateway.processes import GatewayProcess
from tests.nats_server import NatsServer

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow

SPEC = {"model": {"provider": "scripted", "options": {"script": [{"text": "hi"}]}}}


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path)
    backend: PostgresBackend = request.getfixturevalue("postgres_backend")
    return backend


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.kill()


@pytest.mark.parametrize("point", ["before_write", "after_write", "before_answer"])
@pytest.mark.parametrize("write", ["create", "append"])
async def test_a_keyed_write_happens_once_whatever_step_its_gateway_dies_at(
    point: str,
    write: str,
    store_backend: Backend,
    nats_server: NatsServer,
    tmp_path: Path,
    gateways: list[GatewayProcess],
) -> None:
    store = store_backend.make_store()
    await store.migrate()
    try:
        await _crash_then_retry(point, write, store, store_backend, nats_server, tmp_path, gateways)
    finally:
        await store.close()


async def _crash_then_retry(
    point: str,
    write: str,
    store: EventStore,
    store_backend: Backend,
    nats_server: NatsServer,
    tmp_path: Path,
    gateways: list[GatewayProcess],
) -> None:
    headers = {
        "authorization": f"Bearer {(await store.create_api_key('acme')).key}",
        "idempotency-key": f"{write}-1",
    }
    if write == "create":
        path, body = "/v1/sessions", {"spec": SPEC, "message": "only once"}
    else:
        session = await store.create_session("acme", SessionCreated(spec=AgentSpec()))
        path = f"/v1/sessions/{session.session_id}/events"
        body = {"events": [{"type": "user.message", "text": "only once"}]}

    doomed = GatewayProcess(
        store_backend.url, nats_server.url, tmp_path / "doomed.log", {"KEEL_CRASH_AT": point}
    )
    gateways.append(doomed)
    async with httpx2.AsyncClient(headers=headers, timeout=10) as client:
        with pytest.raises(httpx2.HTTPError):  # the gateway dies before it answers
            await client.post(f"{doomed.url}{path}", json=body)
        assert doomed.process.wait(timeout=10) == -9  # SIGKILLed itself at the point

        fresh = GatewayProcess(store_backend.url, nats_server.url, tmp_path / "fresh.log")
        gateways.append(fresh)
        answers = [await client.post(f"{fresh.url}{path}", json=body) for _ in range(3)]
        # The same key with another request is refused, not run.
        other = await client.post(f"{fresh.url}{path}", json={**body, "x": 1})
    assert other.status_code == 422 and "different request" in other.text
    assert {a.status_code for a in answers} == {201 if write == "create" else 202}
    assert answers[0].json() == answers[1].json() == answers[2].json()
    replayed = [a.headers.get("idempotent-replayed") == "true" for a in answers]
    # The effect committed before the crash: the first retry finds it, and its answer.
    assert replayed == [point != "before_write", True, True]

    # Exactly one effect.
    sessions = (await store.list_sessions("acme")).items
    assert len(sessions) == 1
    session_id = sessions[0].session_id
    assert answers[0].json().get("id", session_id) == session_id
    texts = [r.event.text for r in await store.read(session_id) if isinstance(r.event, UserMessage)]
    assert texts == ["only once"]
    assert (await store.verify(session_id)).ok


async def test_a_gateway_killed_while_nats_hangs_leaves_no_key_stuck(
    store_backend: Backend,
    nats_server: NatsServer,
    tmp_path: Path,
    gateways: list[GatewayProcess],
) -> None:
    """The black-box reproduction: NATS frozen, so the create hangs after its write; the
    gateway is SIGKILLed. Before, its key stayed "in progress" and every retry was a 409
    while the session existed; now the retry gets the created session."""
    store = store_backend.make_store()
    await store.migrate()
    try:
        headers = {
            "authorization": f"Bearer {(await store.create_api_key('acme')).key}",
            "idempotency-key": "create-while-nats-hangs",
        }
        body = {"spec": SPEC, "message": "start"}
        hung = GatewayProcess(store_backend.url, nats_server.url, tmp_path / "hung.log")
        gateways.append(hung)
        async with httpx2.AsyncClient(headers=headers) as client:
            nats_server.freeze()
            try:
                with pytest.raises(httpx2.TimeoutException):
                    await client.post(f"{hung.url}/v1/sessions", json=body, timeout=1.0)
                hung.kill()
            finally:
                nats_server.thaw()
            fresh = GatewayProcess(store_backend.url, nats_server.url, tmp_path / "fresh.log")
            gateways.append(fresh)
            retried = await client.post(f"{fresh.url}/v1/sessions", json=body, timeout=10)
        assert retried.status_code == 201, retried.text
        sessions = (await store.list_sessions("acme")).items
        assert [s.session_id for s in sessions] == [retried.json()["id"]]
        assert retried.headers["idempotent-replayed"] == "true"
    finally:
        await store.close()
