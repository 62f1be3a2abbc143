"""Outages of the store and of NATS, 30 seconds each, in the middle of sessions, with every
part a real process: PostgreSQL stopped (every connection cut) and started again; SQLite's
disk full, and its files made read-only; nats-server down and started again.

While a part is away the gateway answers every request at once (a 503 with Retry-After when
the store cannot take a write, never a hang or a 500); the brain and the hands keep running
and carry on when it is back. Afterwards every session completes, every write that was
acknowledged is there once, a write refused during the outage and retried with its key is
there once, every log verifies, every call has one outcome and no effect ran twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from session_store import EventStore, open_store
from tests.brain.invariants import check_invariants
from tests.brain.test_recovery import assert_ran_once
from tests.nats_server import NatsServer
from tests.outages.deployment import ANSWER_WITHIN_S, Client, Deployment
from tests.outages.servers import LoopDisk, PostgresServer

OUTAGE_S = 30.0
SESSIONS_BEFORE = 4

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()  # fails, never skips, without PostgreSQL's binaries
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[LoopDisk]:
    disk = LoopDisk(tmp_path / "disk")
    try:
        yield disk
    finally:
        disk.remove()


async def _open(url: str) -> EventStore:
    store = open_store(url)
    await store.migrate()
    return store


async def drill(
    tmp_path: Path,
    nats: NatsServer,
    store_url: str,
    begin: Callable[[], None],
    end: Callable[[], None],
    *,
    store_away: bool,
) -> Deployment:
    """Run sessions, take a part away for OUTAGE_S while a client keeps writing, bring it
    back, and check everything a user is promised."""
    store = await _open(store_url)
    key = (await store.create_api_key("acme")).key
    await store.close()
    deployment = Deployment(store_url, nats, tmp_path)
    deployment.start()
    try:
        async with httpx2.AsyncClient(
            base_url=deployment.gateway.url, headers={"authorization": f"Bearer {key}"}
        ) as http:
            client = Client(http)
            for number in range(SESSIONS_BEFORE):
                assert (await client.create(f"before-{number}")).status == 201
            await asyncio.sleep(1.5)  # the sessions are mid-run
            stop = asyncio.Event()
            writing = asyncio.create_task(client.keep_creating(stop))
            await asyncio.to_thread(begin)
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(end)
            stop.set()
            await writing
            during = [a for a in client.answers if a.key.startswith("during-")]
            await client.retry_unanswered()
            await client.wait_all()
            metrics = (await http.get("/metrics")).text
    except BaseException:
        print(deployment.logs())
        raise
    finally:
        await deployment.stop()

    # Every request was answered at once: a 201, or a 503 saying when to retry.
    assert all(a.seconds < ANSWER_WITHIN_S for a in client.answers), client.answers
    assert {a.status for a in client.answers} <= {201, 503}, client.answers
    assert all(a.retry_after for a in client.answers if a.status == 503)
    refused = [a for a in during if a.status == 503]
    assert 'keel_store_up{kind="write"} 1.0' in metrics  # back, and the gauge says so
    if store_away:
        assert refused, "the store was away and no write was refused"
        assert 'status="503"' in metrics
    else:
        assert not refused, "the store was up, yet a write was refused"

    # Nothing acknowledged is lost, nothing happened twice.
    store = await _open(store_url)
    try:
        sessions = (await store.list_sessions("acme", limit=1000)).items
        assert sorted(s.session_id for s in sessions) == sorted(client.created.values())
        for session in sessions:
            assert session.status == "completed", session
            assert_ran_once(await check_invariants(store, session.session_id))
    finally:
        await store.close()
    return deployment


def assert_store_outage_logged(deployment: Deployment) -> None:
    """What an operator reads: in each process that uses the store, one line when its reads
    or writes start failing and one when they work again; not a line per failed operation."""
    for log in ("brain.log", "gateway.log"):
        text = (deployment.root / log).read_text()
        announced = 0
        for kind in ("reads", "writes"):
            started = text.count(f"the store is unavailable for {kind}")
            assert started <= 1 and text.count(f"the store takes {kind} again") == started, text
            announced += started
        assert announced, text
        assert "Traceback" not in text


async def test_postgres_stopped_for_30s(
    tmp_path: Path, nats_server: NatsServer, postgres: PostgresServer
) -> None:
    deployment = await drill(
        tmp_path, nats_server, postgres.url, postgres.stop, postgres.start, store_away=True
    )
    assert_store_outage_logged(deployment)


async def test_sqlite_disk_full_for_30s(
    tmp_path: Path, nats_server: NatsServer, disk: LoopDisk
) -> None:
    url = f"sqlite:///{disk.mount_point / 'keel.db'}"
    deployment = await drill(tmp_path, nats_server, url, disk.fill, disk.unfill, store_away=True)
    assert_store_outage_logged(deployment)


async def test_sqlite_files_read_only_for_30s(
    tmp_path: Path, nats_server: NatsServer, disk: LoopDisk
) -> None:
    database = disk.mount_point / "keel.db"
    files = [database, database.with_name("keel.db-wal")]
    deployment = await drill(
        tmp_path,
        nats_server,
        f"sqlite:///{database}",
        lambda: disk.make_read_only(*files),
        lambda: disk.make_writable(*files),
        store_away=True,
    )
    assert_store_outage_logged(deployment)


async def test_nats_down_for_30s(tmp_path: Path, nats_server: NatsServer, store_url: str) -> None:
    deployment = await drill(
        tmp_path, nats_server, store_url, nats_server.stop, nats_server.start, store_away=False
    )
    # What an operator reads: each process says once that it lost NATS, and once that it is
    # back, instead of a traceback every reconnect attempt.
    for log in ("brain.log", "hands.log", "gateway.log"):
        text = (deployment.root / log).read_text()
        assert text.count("lost its NATS connection") == 1, text
        assert text.count("is connected to NATS again") == 1, text
        assert "Traceback" not in text
