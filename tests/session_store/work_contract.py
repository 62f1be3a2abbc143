"""What every backend keeps for self-hosted environments: work items derived from the
sessions waiting on their worker, handed out by polls, leased by acks and heartbeats, and
reclaimed when a lease lapses; and the keys their workers poll with. Mixed into each
backend's test class with the main contract. Time is a clock the tests move."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from schemas import (
    WAITING_FOR_CLIENT,
    AgentSpec,
    ManagedOrigin,
    SandboxSpec,
    SessionArchived,
    SessionCreated,
    SessionStatus,
    Status,
)
from session_store import (
    EventStore,
    HeartbeatMismatch,
    InvalidInput,
    ResourceNotFound,
    WorkStateConflict,
)
from session_store._work import RECLAIM_AFTER_S
from tests.backends import Backend

ENV = "env_worked"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def session_in(store: EventStore, environment_id: str = ENV, tenant: str = "acme") -> str:
    origin = ManagedOrigin(agent_id="agent_1", agent_version=1, environment_id=environment_id)
    spec = AgentSpec(turn_end="idle", sandbox=SandboxSpec(backend="self_hosted"))
    info = await store.create_session(tenant, SessionCreated(spec=spec, managed=origin))
    return info.session_id


async def set_status(store: EventStore, session_id: str, status: Status, reason: str) -> None:
    """What a brain writes when it lets a session wait (or run, or idle)."""
    lease = await store.claim(session_id, "brain-1", ttl=30)
    await store.append(
        session_id,
        [SessionStatus(status=status, reason=reason)],
        expect_seq=lease.head_seq,
        epoch=lease.epoch,
    )
    await store.release(lease)


async def waiting(store: EventStore, environment_id: str = ENV, tenant: str = "acme") -> str:
    session_id = await session_in(store, environment_id, tenant)
    await set_status(store, session_id, "waiting", WAITING_FOR_CLIENT)
    return session_id


class WorkContract:
    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    async def work(self, backend: Backend, clock: Clock) -> AsyncIterator[EventStore]:
        store = backend.make_store(clock)
        await store.migrate()
        try:
            yield store
        finally:
            await store.close()

    async def test_a_session_waiting_on_its_worker_is_handed_out_once_until_reclaimed(
        self, work: EventStore, clock: Clock
    ) -> None:
        assert await work.poll_work("acme", ENV, worker_id="w1") is None
        session_id = await waiting(work)
        await session_in(work)  # idle: nothing for a worker to do
        await waiting(work, environment_id="env_other")
        await waiting(work, tenant="globex")
        item = await work.poll_work("acme", ENV, worker_id="w1")
        assert item is not None and item.work_id.startswith("work_")
        assert (item.session_id, item.state, item.worker_id) == (session_id, "queued", "w1")
        assert await work.poll_work("acme", ENV, worker_id="w2") is None
        clock.advance(RECLAIM_AFTER_S + 0.1)
        again = await work.poll_work("acme", ENV, worker_id="w2")
        assert again is not None and (again.work_id, again.worker_id) == (item.work_id, "w2")
        assert await work.poll_work("acme", ENV, worker_id="w1") is None

    async def test_an_ack_leases_the_item_and_each_heartbeat_must_name_the_last(
        self, work: EventStore
    ) -> None:
        await waiting(work)
        item = await work.poll_work("acme", ENV)
        assert item is not None
        wid = item.work_id
        acked = await work.ack_work("acme", ENV, wid, ttl=30)
        assert acked.state == "starting" and acked.acknowledged_at is not None
        assert acked.lease_until is not None and acked.ttl_s == 30
        assert await work.ack_work("acme", ENV, wid, ttl=30) == acked  # a retried ack
        first = await work.heartbeat_work("acme", ENV, wid, ttl=20, expected=None)
        assert (first.state, first.extended, first.ttl_s) == ("active", True, 20)
        assert first.heartbeat_us is not None
        with pytest.raises(HeartbeatMismatch) as stale:
            await work.heartbeat_work("acme", ENV, wid, ttl=20, expected=None)
        assert stale.value.lease.heartbeat_us == first.heartbeat_us
        assert (stale.value.lease.state, stale.value.lease.extended) == ("active", False)
        second = await work.heartbeat_work("acme", ENV, wid, ttl=20, expected=first.heartbeat_us)
        assert second.heartbeat_us is not None and second.heartbeat_us > first.heartbeat_us
        with pytest.raises(HeartbeatMismatch):
            await work.heartbeat_work("acme", ENV, wid, ttl=20, expected=first.heartbeat_us)
        unchecked = await work.heartbeat_work("acme", ENV, wid, ttl=20, expected=None, check=False)
        assert unchecked.extended
        assert (await work.get_work("acme", ENV, wid)).started_at is not None

        stopping = await work.stop_work("acme", ENV, wid, force=False)
        assert stopping.state == "stopping" and stopping.stop_requested_at is not None
        told = await work.heartbeat_work("acme", ENV, wid, ttl=20, expected=12345)
        assert (told.state, told.extended) == ("stopping", False)
        stopped = await work.stop_work("acme", ENV, wid, force=True)
        assert stopped.state == "stopped" and stopped.stopped_at is not None
        assert stopped.stop_requested_at == stopping.stop_requested_at
        with pytest.raises(WorkStateConflict):
            await work.stop_work("acme", ENV, wid, force=True)
        with pytest.raises(WorkStateConflict):
            await work.ack_work("acme", ENV, wid, ttl=30)
        with pytest.raises(ResourceNotFound):
            await work.get_work("globex", ENV, wid)
        with pytest.raises(ResourceNotFound):
            await work.ack_work("acme", "env_other", wid, ttl=30)

    async def test_a_dead_workers_item_goes_to_another_worker_once_its_lease_lapses(
        self, work: EventStore, clock: Clock
    ) -> None:
        await waiting(work)
        item = await work.poll_work("acme", ENV, worker_id="dead")
        assert item is not None
        await work.ack_work("acme", ENV, item.work_id, ttl=10)
        beat = await work.heartbeat_work("acme", ENV, item.work_id, ttl=10, expected=None)
        clock.advance(9)
        assert await work.poll_work("acme", ENV, worker_id="next") is None  # still held
        clock.advance(2)
        taken = await work.poll_work("acme", ENV, worker_id="next")
        assert taken is not None and taken.work_id == item.work_id
        assert (taken.state, taken.heartbeat_us, taken.acknowledged_at) == ("queued", None, None)
        with pytest.raises(HeartbeatMismatch):  # the dead one, back: it no longer holds it
            await work.heartbeat_work("acme", ENV, item.work_id, ttl=10, expected=beat.heartbeat_us)
        await work.ack_work("acme", ENV, item.work_id, ttl=10)
        mine = await work.heartbeat_work("acme", ENV, item.work_id, ttl=10, expected=None)
        assert mine.extended
        with pytest.raises(HeartbeatMismatch):
            await work.heartbeat_work("acme", ENV, item.work_id, ttl=10, expected=beat.heartbeat_us)

    async def test_an_item_whose_session_no_longer_waits_is_stopped_and_the_next_wait_is_new(
        self, work: EventStore, clock: Clock
    ) -> None:
        session_id = await waiting(work)
        item = await work.poll_work("acme", ENV)
        assert item is not None
        await work.ack_work("acme", ENV, item.work_id, ttl=10)
        await set_status(work, session_id, "idle", "end_turn")
        clock.advance(11)  # its worker died after the turn ended
        assert await work.poll_work("acme", ENV) is None
        assert (await work.get_work("acme", ENV, item.work_id)).state == "stopped"
        await set_status(work, session_id, "waiting", WAITING_FOR_CLIENT)
        fresh = await work.poll_work("acme", ENV)
        assert fresh is not None and fresh.work_id != item.work_id
        # Handed out, not acknowledged, and the session stops waiting: the item stops.
        await set_status(work, session_id, "running", "")
        assert await work.poll_work("acme", ENV) is None
        assert (await work.get_work("acme", ENV, fresh.work_id)).state == "stopped"
        with pytest.raises(WorkStateConflict):
            await work.ack_work("acme", ENV, fresh.work_id, ttl=10)

    async def test_a_heartbeat_for_an_ended_or_archived_session_tells_the_worker_to_stop(
        self, work: EventStore
    ) -> None:
        ended, archived = await waiting(work), await waiting(work)
        leased = {}
        for _ in range(2):
            item = await work.poll_work("acme", ENV)
            assert item is not None
            await work.ack_work("acme", ENV, item.work_id, ttl=30)
            leased[item.session_id] = item.work_id
        await set_status(work, ended, "cancelled", "cancelled by the user")
        await work.amend_session(archived, SessionArchived())
        for session_id in (ended, archived):
            lease = await work.heartbeat_work(
                "acme", ENV, leased[session_id], ttl=30, expected=None
            )
            assert (lease.state, lease.extended) == ("stopping", False)

    async def test_concurrent_polls_hand_each_item_to_exactly_one_worker(
        self, work: EventStore
    ) -> None:
        sessions = {await waiting(work) for _ in range(3)}
        handed = await asyncio.gather(
            *(work.poll_work("acme", ENV, worker_id=f"w{i}") for i in range(10))
        )
        items = [item for item in handed if item is not None]
        assert sorted(item.session_id for item in items) == sorted(sessions)
        listed = await work.list_work("acme", ENV)
        assert len(listed.items) == 3  # one live item per session, however it was derived

    async def test_metadata_pages_and_stats(self, work: EventStore, clock: Clock) -> None:
        for _ in range(3):
            await waiting(work)
        first = await work.poll_work("acme", ENV, worker_id="w1")
        assert first is not None
        patched = await work.patch_work_metadata("acme", ENV, first.work_id, {"a": "1", "b": "2"})
        assert patched.metadata == {"a": "1", "b": "2"}
        patched = await work.patch_work_metadata("acme", ENV, first.work_id, {"a": None})
        assert patched.metadata == {"b": "2"}
        # Past 16 pairs is a conflict with what the item holds, not bad input: the same
        # keys fit once another is removed.
        sixteen = {f"k{i}": "v" for i in range(16)}
        with pytest.raises(WorkStateConflict):
            await work.patch_work_metadata("acme", ENV, first.work_id, sixteen)
        assert (await work.get_work("acme", ENV, first.work_id)).metadata == {"b": "2"}
        fits = await work.patch_work_metadata("acme", ENV, first.work_id, {"b": None, **sixteen})
        assert fits.metadata == sixteen
        stats = await work.work_stats("acme", ENV)
        assert (stats.depth, stats.pending, stats.workers_polling) == (2, 1, 1)
        assert stats.oldest_queued_at is not None
        page = await work.list_work("acme", ENV, limit=2)
        assert len(page.items) == 2 and page.next_cursor == page.items[-1].work_id
        rest = await work.list_work("acme", ENV, limit=2, cursor=page.next_cursor)
        assert len(rest.items) == 1 and rest.next_cursor is None
        ids = [i.work_id for i in page.items + rest.items]
        assert ids == sorted(ids, reverse=True)
        clock.advance(31)
        assert (await work.work_stats("acme", ENV)).workers_polling == 0
        with pytest.raises(InvalidInput):
            await work.list_work("acme", ENV, limit=0)
        with pytest.raises(InvalidInput):
            await work.poll_work("acme", ENV, worker_id="w" * 129)

    async def test_an_environment_key_serves_one_environment_until_it_is_deleted(
        self, work: EventStore
    ) -> None:
        env = await work.put_resource("acme", "environment", '{"config":{"type":"self_hosted"}}')
        key = await work.create_environment_key("acme", env.resource_id, "laptop")
        assert key.key.startswith("keel_env_") and key.environment_id == env.resource_id
        scope = await work.environment_for_key(key.key)
        assert scope is not None and (scope.tenant, scope.environment_id) == (
            "acme",
            env.resource_id,
        )
        assert await work.tenant_for_key(key.key) is None  # not an API key
        assert await work.environment_for_key("keel_env_nope") is None
        api_key = await work.create_api_key("acme")
        assert await work.environment_for_key(api_key.key) is None
        await work.delete_resource("acme", "environment", env.resource_id)
        assert await work.environment_for_key(key.key) is None
