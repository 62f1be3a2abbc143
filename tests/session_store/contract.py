"""The behaviour every store backend must have. Subclassed once per backend (test_sqlite.py,
test_postgres.py); this base is not collected because its name does not start with Test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from schemas import (
    AgentSpec,
    BlobRef,
    ModelResponse,
    SessionCreated,
    SessionForked,
    SessionStatus,
    TextBlock,
    ToolRequested,
    ToolResult,
    UnknownEvent,
    Usage,
    UserInterrupt,
    UserMessage,
)
from session_store import (
    Appended,
    Conflict,
    EventStore,
    Fenced,
    IdempotentWrite,
    InvalidEvent,
    InvalidInput,
    KeyTaken,
    LeaseHeld,
    PayloadTooLarge,
    Remembered,
    SessionBusy,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    StoreLimits,
)
from session_store._projection import INPUT_GRACE_S
from tests.backends import Backend

T = TypeVar("T")

CREATED = SessionCreated(spec=AgentSpec(system_prompt="be brief"), title="t")


def message(i: int) -> UserMessage:
    return UserMessage(text=f"message {i}")


def keyed(
    key: str, answer: Callable[[T], tuple[int, bytes]], tenant: str = "acme"
) -> IdempotentWrite[T]:
    return IdempotentWrite(tenant=tenant, key=key, request_hash="h", answer=answer)


def _head_answer(appended: Appended) -> tuple[int, bytes]:
    return 202, b"%d" % appended.head_seq


class StoreContract:
    """Subclasses provide the `backend` fixture; `store` (conftest.py) is migrated on it."""

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError

    # -- sessions ---------------------------------------------------------------------------

    async def test_create_starts_the_log_with_session_created(self, store: EventStore) -> None:
        info = await store.create_session("acme", CREATED)
        assert info.head_seq == 1 and info.status == "idle" and info.tenant == "acme"
        [first] = await store.read(info.session_id)
        assert first.seq == 1 and first.type == "session.created" and first.event == CREATED
        assert await store.get_session(info.session_id) == msgspec.structs.replace(
            info, updated_at=info.created_at
        )

    async def test_create_with_a_taken_id_is_refused(self, store: EventStore) -> None:
        await store.create_session("acme", CREATED, session_id="ses_fixed")
        with pytest.raises(SessionExists):
            await store.create_session("acme", CREATED, session_id="ses_fixed")
        assert await store.head("ses_fixed") == 1

    @pytest.mark.parametrize("bad", ["", "has space", "x" * 65, "semi;colon", "nul\0"])
    async def test_bad_ids_are_refused(self, store: EventStore, bad: str) -> None:
        with pytest.raises(InvalidInput):
            await store.create_session("acme", CREATED, session_id=bad)
        with pytest.raises(InvalidInput):
            await store.create_session(bad, CREATED)

    async def test_unknown_session(self, store: EventStore) -> None:
        for call in (
            store.get_session("ses_nope"),
            store.read("ses_nope"),
            store.head("ses_nope"),
            store.claim("ses_nope", "brain-1", 5),
            store.verify("ses_nope"),
            store.append_input("ses_nope", [message(1)]),
            store.append("ses_nope", [message(1)], 1, 1),
        ):
            with pytest.raises(SessionNotFound):
                await call

    async def test_list_sessions_by_tenant_and_status_with_cursor(self, store: EventStore) -> None:
        ids = [(await store.create_session("acme", CREATED)).session_id for _ in range(7)]
        other = await store.create_session("globex", CREATED)
        await store.append_input(ids[2], [SessionStatus(status="completed")])

        seen: list[str] = []
        cursor = None
        while True:
            page = await store.list_sessions("acme", limit=3, cursor=cursor)
            seen += [s.session_id for s in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == sorted(ids, reverse=True)
        assert other.session_id not in seen

        completed = await store.list_sessions("acme", status="completed")
        assert [s.session_id for s in completed.items] == [ids[2]]
        assert completed.items[0].status == "completed"
        with pytest.raises(InvalidInput):
            await store.list_sessions("acme", limit=0)

    async def test_list_sessions_by_creation_time(self, store: EventStore) -> None:
        first = await store.create_session("acme", CREATED)
        await asyncio.sleep(0.02)
        second = await store.create_session("acme", CREATED)
        between = (first.created_at + second.created_at) / 2
        after = await store.list_sessions("acme", created_after=between)
        before = await store.list_sessions("acme", created_before=between)
        assert [s.session_id for s in after.items] == [second.session_id]
        assert [s.session_id for s in before.items] == [first.session_id]
        both = await store.list_sessions(
            "acme", created_after=first.created_at, created_before=second.created_at + 1
        )
        assert len(both.items) == 2

    async def test_the_session_row_keeps_title_metadata_and_running_totals(
        self, store: EventStore
    ) -> None:
        created = SessionCreated(spec=AgentSpec(), title="triage", metadata={"team": "ops"})
        sid = (await store.create_session("acme", created)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        usage = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=5)
        turn = ModelResponse(
            content=[TextBlock(text="hi")], stop_reason="end_turn", usage=usage, cost_usd=0.25
        )
        # Two appends that may share one group commit, and one with two responses.
        await asyncio.gather(
            store.append(sid, [turn], expect_seq=1, epoch=lease.epoch),
            store.append_input(sid, [message(1)]),
        )
        await store.append(sid, [turn, turn], expect_seq=3, epoch=lease.epoch)
        info = await store.get_session(sid)
        assert (info.title, info.metadata, info.turns) == ("triage", {"team": "ops"}, 3)
        assert info.usage == Usage(input_tokens=300, output_tokens=60, cache_read_tokens=15)
        assert info.cost_usd == pytest.approx(0.75)
        listed = (await store.list_sessions("acme")).items[0]
        assert listed == info
        # A fork up to the first response carries that response's totals.
        fork = await store.fork_session(sid, 2, "acme")
        assert (fork.title, fork.turns, fork.usage.input_tokens) == ("triage", 1, 100)
        assert await store.get_session(fork.session_id) == fork

    async def test_only_a_finished_session_nobody_holds_can_be_deleted(
        self, store: EventStore
    ) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        with pytest.raises(SessionBusy, match="idle"):
            await store.delete_session(sid)
        lease = await store.claim(sid, "brain-1", ttl=30)
        await store.append(sid, [SessionStatus(status="cancelled")], 1, lease.epoch)
        with pytest.raises(SessionBusy, match="still recording"):
            await store.delete_session(sid)
        await store.release(lease)
        await store.save_snapshot(sid, 2, b"state")
        kept = (await store.create_session("acme", CREATED)).session_id
        await store.delete_session(sid)
        for gone in (store.get_session(sid), store.read(sid), store.delete_session(sid)):
            with pytest.raises(SessionNotFound):
                await gone
        assert await store.latest_snapshot(sid) is None
        assert [s.session_id for s in (await store.list_sessions("acme")).items] == [kept]
        assert (await store.verify(kept)).ok

    # -- append and read --------------------------------------------------------------------

    async def test_fenced_append_and_read(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        first = await store.append(sid, [message(1), message(2)], expect_seq=1, epoch=lease.epoch)
        assert first.head_seq == 3
        second = await store.append(sid, [message(3)], expect_seq=3, epoch=lease.epoch)
        assert second.head_seq == 4
        assert first.at <= second.at
        events = await store.read(sid)
        assert [e.seq for e in events] == [1, 2, 3, 4]
        assert [e.event for e in events[1:]] == [message(1), message(2), message(3)]
        assert [e.seq for e in await store.read(sid, after_seq=2)] == [3, 4]
        assert [e.seq for e in await store.read(sid, after_seq=1, limit=2)] == [2, 3]
        assert await store.read(sid, after_seq=4) == []
        assert events[1].at >= events[0].at

    async def test_a_read_of_some_types_skips_the_others(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        await store.append_input(sid, [message(1), UserInterrupt(), message(2)])
        picked = await store.read(sid, types={"session.created", "user.interrupt"})
        assert [(e.seq, e.type) for e in picked] == [(1, "session.created"), (3, "user.interrupt")]
        assert await store.read(sid, after_seq=3, types={"user.interrupt"}) == []
        with pytest.raises(SessionNotFound):
            await store.read("ses_missing", types={"user.interrupt"})

    async def test_stale_expect_seq_is_a_conflict_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        await store.append(sid, [message(1)], 1, lease.epoch)
        with pytest.raises(Conflict) as caught:
            await store.append(sid, [message(2), message(3)], 1, lease.epoch)
        assert caught.value.head_seq == 2
        assert await store.head(sid) == 2

    async def test_superseded_epoch_is_fenced_forever(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        old = await store.claim(sid, "brain-1", ttl=30)
        new = await store.claim(sid, "brain-1", ttl=30)  # restart in place: same owner
        assert new.epoch == old.epoch + 1
        for expect in (1, 2):
            with pytest.raises(Fenced):
                await store.append(sid, [message(1)], expect, old.epoch)
        with pytest.raises(Fenced):
            await store.renew(old, ttl=30)
        assert await store.release(old) is False
        assert (await store.append(sid, [message(1)], 1, new.epoch)).head_seq == 2

    async def test_concurrent_appends_at_one_seq_have_one_winner(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        results = await asyncio.gather(
            *(store.append(sid, [message(i)], 1, lease.epoch) for i in range(20)),
            return_exceptions=True,
        )
        assert sum(isinstance(r, Appended) and r.head_seq == 2 for r in results) == 1
        assert sum(isinstance(r, Conflict) for r in results) == 19
        assert [e.seq for e in await store.read(sid)] == [1, 2]

    async def test_group_commit_keeps_each_session_gapless(self, store: EventStore) -> None:
        sids = [(await store.create_session("acme", CREATED)).session_id for _ in range(10)]
        leases = {sid: await store.claim(sid, "brain-1", ttl=30) for sid in sids}

        async def writer(sid: str) -> None:
            head = 1
            for i in range(15):
                head = (await store.append(sid, [message(i)], head, leases[sid].epoch)).head_seq

        await asyncio.gather(*(writer(sid) for sid in sids))
        for sid in sids:
            events = await store.read(sid)
            assert [e.seq for e in events] == list(range(1, 17))
            assert (await store.verify(sid)).ok

    async def test_group_commits_are_measured_on_the_process_registry(
        self, backend: Backend
    ) -> None:
        registry = CollectorRegistry()
        store = backend.make_store(registry=registry)
        await store.migrate()
        try:
            sids = [(await store.create_session("acme", CREATED)).session_id for _ in range(8)]
            leases = [await store.claim(sid, "brain-1", ttl=30) for sid in sids]
            await asyncio.gather(
                *(store.append(lease.session_id, [message(1)], 1, lease.epoch) for lease in leases)
            )
        finally:
            await store.close()
        labels = {"backend": backend.name}

        def sample(name: str) -> float | None:
            return registry.get_sample_value(name, labels)

        # Eight appends at once: fewer commits than appends, and every append counted once.
        commits = sample("keel_store_commit_appends_count")
        assert commits is not None and 1 <= commits < 8
        assert sample("keel_store_commit_appends_sum") == 8
        assert sample("keel_store_commit_seconds_count") == commits
        assert (sample("keel_store_commit_seconds_sum") or 0) > 0
        assert sample("keel_store_retries_total") == 0

    async def test_append_input_needs_no_lease(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        assert (await store.append_input(sid, [message(1)])).head_seq == 2
        assert (await store.append_input(sid, [message(2)], expect_seq=2)).head_seq == 3
        with pytest.raises(Conflict):
            await store.append_input(sid, [message(3)], expect_seq=2)
        # The owner's next append sees the input as a conflict, re-reads and carries on.
        with pytest.raises(Conflict):
            await store.append(sid, [message(4)], 1, lease.epoch)
        assert (await store.append(sid, [message(4)], 3, lease.epoch)).head_seq == 4

    async def test_status_events_update_the_session_row(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        await store.append_input(
            sid, [SessionStatus(status="running"), SessionStatus(status="paused", reason="budget")]
        )
        info = await store.get_session(sid)
        assert (info.status, info.status_reason, info.head_seq) == ("paused", "budget", 3)

    @pytest.mark.parametrize(
        "bad",
        [
            [],
            ["not an event"],
            [{"type": "user.message", "text": "a dict is not an event"}],
            [UserMessage(text=3)],  # type: ignore[arg-type]
            [ToolResult(call_id="c1", outcome="maybe")],  # type: ignore[arg-type]
            [ToolRequested(call_id="c1", name="bash", input={"x": object()})],
            [
                ModelResponse(
                    content=[TextBlock(text="hi")], stop_reason="end_turn", cost_usd=float("nan")
                )
            ],
            [SessionCreated(spec=AgentSpec())],
            [UserMessage(text="ok"), UserMessage(text=None)],  # type: ignore[arg-type]
        ],
    )
    async def test_invalid_events_are_refused_and_nothing_is_written(
        self, store: EventStore, bad: list[object]
    ) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        with pytest.raises(InvalidEvent):
            await store.append(sid, bad, 1, lease.epoch)  # type: ignore[arg-type]
        with pytest.raises(InvalidEvent):
            await store.append_input(sid, bad)  # type: ignore[arg-type]
        assert await store.head(sid) == 1
        assert len(await store.read(sid)) == 1

    async def test_oversize_event_is_refused_and_nothing_is_written(
        self, store: EventStore
    ) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        limit = StoreLimits().max_event_bytes
        huge = ToolResult(call_id="c1", output="x" * limit)
        with pytest.raises(PayloadTooLarge) as caught:
            await store.append(sid, [message(1), huge], 1, lease.epoch)
        assert caught.value.limit == limit
        assert await store.head(sid) == 1

    async def test_cancelled_append_commits_whole_or_not_at_all(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        task = asyncio.create_task(store.append(sid, [message(1), message(2)], 1, lease.epoch))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # Queued behind the cancelled append, so when it returns that one is decided.
        head = (await store.append_input(sid, [message(3)])).head_seq
        texts = [e.event.text for e in (await store.read(sid))[1:]]  # type: ignore[union-attr]
        assert texts in (["message 3"], ["message 1", "message 2", "message 3"])
        assert head == len(texts) + 1

    async def test_unknown_event_types_are_kept_raw(
        self, store: EventStore, backend: Backend
    ) -> None:
        """A newer writer's event type must not break an older reader's replay."""
        sid = (await store.create_session("acme", CREATED)).session_id
        await backend.execute(
            "INSERT INTO events (session_id, seq, type, at, data, hash) VALUES "
            f"('{sid}', 2, 'agent.dreamed', 1.0, '{{\"dream\": 1}}', '')"
        )
        events = await store.read(sid)
        assert events[1].event == UnknownEvent(type="agent.dreamed", data='{"dream": 1}')

    # -- leases -----------------------------------------------------------------------------

    async def test_claim_renew_release(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        assert (lease.epoch, lease.owner, lease.head_seq) == (1, "brain-1", 1)
        with pytest.raises(LeaseHeld) as caught:
            await store.claim(sid, "brain-2", ttl=30)
        assert caught.value.owner == "brain-1"
        renewed = await store.renew(lease, ttl=60)
        assert renewed.epoch == lease.epoch and renewed.until > lease.until
        assert await store.release(renewed) is True
        info = await store.get_session(sid)
        assert info.lease_owner is None and info.lease_epoch == 1
        taken = await store.claim(sid, "brain-2", ttl=30)
        assert taken.epoch == 2
        assert await store.leases_of("brain-2") == [sid]
        assert await store.leases_of("brain-1") == []

    async def test_the_leases_of_a_dead_owner_end_at_once_and_fence_it(
        self, store: EventStore
    ) -> None:
        held = (await store.create_session("acme", CREATED)).session_id
        done = (await store.create_session("acme", CREATED)).session_id
        other = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(held, "brain-dead", ttl=60)
        await store.claim(done, "brain-dead", ttl=60)
        await store.append_input(done, [SessionStatus(status="completed")])
        await store.claim(other, "brain-live", ttl=60)
        assert await store.expire_leases_of("brain-dead") == [held]
        assert await store.expire_leases_of("brain-dead") == []  # once
        assert await store.sessions_due() == [held]
        taken = await store.claim(held, "brain-next", ttl=60)
        assert taken.epoch == lease.epoch + 1
        with pytest.raises(Fenced):
            await store.renew(lease, ttl=60)
        assert (await store.get_session(other)).lease_owner == "brain-live"

    async def test_expired_lease_is_claimable_and_listed_for_the_sweeper(
        self, store: EventStore
    ) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        done = (await store.create_session("acme", CREATED)).session_id
        await store.append_input(done, [SessionStatus(status="completed")])
        # Long enough for the first look to come before it ends, on a loaded machine too.
        short = await store.claim(sid, "brain-1", ttl=1.0)
        await store.claim(done, "brain-1", ttl=1.0)
        assert await store.sessions_due() == []
        await asyncio.sleep(1.1)
        assert await store.sessions_due() == [sid]  # terminal sessions are not swept
        taken = await store.claim(sid, "brain-2", ttl=30)
        assert taken.epoch == short.epoch + 1
        assert await store.sessions_due() == []
        with pytest.raises(Fenced):
            await store.append(sid, [message(1)], 1, short.epoch)

    async def test_input_nobody_takes_makes_the_session_due(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        await store.append_input(sid, [message(1)])
        assert await store.sessions_due() == []  # a brain has a moment to take it first
        await asyncio.sleep(INPUT_GRACE_S + 0.1)
        assert await store.sessions_due() == [sid]
        lease = await store.claim(sid, "brain-1", ttl=30)
        assert await store.sessions_due() == []
        # Input while a brain holds the session is its to see; releasing having seen it
        # clears the timer, and fenced appends never set one.
        await store.append_input(sid, [message(2)])
        await store.append(sid, [message(3)], 3, lease.epoch)
        assert await store.release(lease, seen_seq=4)
        await asyncio.sleep(INPUT_GRACE_S + 0.1)
        assert await store.sessions_due() == []

    async def test_input_a_releasing_owner_did_not_see_makes_the_session_due_at_once(
        self, store: EventStore
    ) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        await store.append_input(sid, [message(1)])
        assert await store.release(lease, seen_seq=1, wake_at=time.time() + 3600)
        assert await store.sessions_due() == [sid]

    async def test_a_timer_left_at_release_makes_the_session_due(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        later = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "brain-1", ttl=30)
        assert await store.release(lease, wake_at=time.time() + 0.05)
        other = await store.claim(later, "brain-1", ttl=30)
        assert await store.release(other, wake_at=time.time() + 3600)
        assert await store.sessions_due() == []
        await asyncio.sleep(0.1)
        assert await store.sessions_due() == [sid]
        taken = await store.claim(sid, "brain-2", ttl=30)  # claiming clears the timer
        await store.release(taken)
        assert await store.sessions_due() == []

    # -- forks -------------------------------------------------------------------------------

    async def test_a_fork_copies_the_log_up_to_a_seq_and_leaves_the_parent_alone(
        self, store: EventStore
    ) -> None:
        parent = (await store.create_session("acme", CREATED)).session_id
        await store.append_input(parent, [message(1), message(2)])
        await store.append_input(parent, [SessionStatus(status="completed", reason="done")])
        child = await store.fork_session(parent, 2, "acme")
        assert (child.head_seq, child.status, child.tenant) == (3, "idle", "acme")
        copied, original = await store.read(child.session_id), await store.read(parent)
        assert [(r.seq, r.type, r.at, r.event) for r in copied[:2]] == [
            (r.seq, r.type, r.at, r.event) for r in original[:2]
        ]
        assert copied[2].event == SessionForked(parent_session_id=parent, at_seq=2)
        assert (await store.verify(child.session_id)).ok
        assert (await store.verify(parent)).ok and await store.head(parent) == 4
        # Forking a finished session at its end starts it again, waiting for input.
        again = await store.fork_session(parent, 4, "acme")
        assert again.status == "idle" and again.status_reason.startswith("forked from")
        for bad in (0, 5):
            with pytest.raises(InvalidInput):
                await store.fork_session(parent, bad, "acme")
        with pytest.raises(SessionNotFound):
            await store.fork_session("ses_nobody", 1, "acme")

    # -- idempotency keys ---------------------------------------------------------------------

    async def test_a_keyed_create_records_its_answer_with_the_session(
        self, store: EventStore
    ) -> None:
        def answer(info: SessionInfo) -> tuple[int, bytes]:
            return 201, info.session_id.encode()

        first = await store.create_session(
            "acme", CREATED, first_input=[message(1)], keyed=keyed("k1", answer)
        )
        assert first.head_seq == 2 and await store.head(first.session_id) == 2
        assert (await store.verify(first.session_id)).ok
        held = await store.recall("acme", "k1")
        assert held == Remembered(request_hash="h", status=201, body=first.session_id.encode())
        with pytest.raises(KeyTaken):
            await store.create_session("acme", CREATED, keyed=keyed("k1", answer))
        assert len((await store.list_sessions("acme")).items) == 1  # the loser left nothing
        assert await store.recall("globex", "k1") is None  # keys are per tenant
        other = await store.create_session("globex", CREATED, keyed=keyed("k1", answer, "globex"))
        assert (await store.recall("globex", "k1")) == Remembered(
            request_hash="h", status=201, body=other.session_id.encode()
        )

    async def test_first_input_leaves_the_input_timer(self, store: EventStore) -> None:
        info = await store.create_session("acme", CREATED, first_input=[message(1)])
        assert [r.event for r in await store.read(info.session_id)][1] == message(1)
        assert info.session_id not in await store.sessions_due()
        await asyncio.sleep(INPUT_GRACE_S + 0.1)
        assert info.session_id in await store.sessions_due()

    async def test_concurrent_keyed_appends_with_one_key_append_once(
        self, store: EventStore
    ) -> None:
        session_id = (await store.create_session("acme", CREATED)).session_id
        unkeyed = [store.append_input(session_id, [message(i)]) for i in range(3)]
        keyed_appends = [
            store.append_input(session_id, [message(9)], keyed=keyed("k1", _head_answer))
            for _ in range(5)
        ]
        results = await asyncio.gather(*unkeyed, *keyed_appends, return_exceptions=True)
        assert all(isinstance(r, Appended) for r in results[:3])  # others are unaffected
        won = [r for r in results[3:] if isinstance(r, Appended)]
        assert len(won) == 1 and all(isinstance(r, KeyTaken) for r in results[3:] if r not in won)
        assert await store.head(session_id) == 5
        assert await store.recall("acme", "k1") == Remembered(
            request_hash="h", status=202, body=b"%d" % won[0].head_seq
        )
        # Again, later: refused; the log is as it was.
        with pytest.raises(KeyTaken):
            await store.append_input(session_id, [message(9)], keyed=keyed("k1", _head_answer))
        assert await store.head(session_id) == 5

    async def test_a_refused_keyed_write_keeps_no_key(self, store: EventStore) -> None:
        session_id = (await store.create_session("acme", CREATED)).session_id
        with pytest.raises(Conflict):
            await store.append_input(
                session_id, [message(1)], expect_seq=7, keyed=keyed("k1", _head_answer)
            )
        with pytest.raises(SessionNotFound):
            await store.append_input("ses_nobody", [message(1)], keyed=keyed("k2", _head_answer))
        with pytest.raises(SessionBusy):
            await store.delete_session(session_id, keyed=keyed("k3", lambda _: (204, b"")))
        for key in ("k1", "k2", "k3"):
            assert await store.recall("acme", key) is None
        appended = await store.append_input(
            session_id, [message(1)], keyed=keyed("k1", _head_answer)
        )
        assert appended.head_seq == 2

    async def test_keyed_forks_and_deletes_record_their_answers(self, store: EventStore) -> None:
        parent = (await store.create_session("acme", CREATED)).session_id
        child = await store.fork_session(
            parent, 1, "acme", keyed=keyed("fork", lambda i: (201, i.session_id.encode()))
        )
        with pytest.raises(KeyTaken):
            await store.fork_session(parent, 1, "acme", keyed=keyed("fork", lambda _: (201, b"")))
        held = await store.recall("acme", "fork")
        assert held is not None and held.body == child.session_id.encode()
        await store.append_input(parent, [SessionStatus(status="cancelled", reason="done")])
        await store.delete_session(parent, keyed=keyed("delete", lambda _: (204, b"")))
        assert await store.recall("acme", "delete") == Remembered(
            request_hash="h", status=204, body=b""
        )
        with pytest.raises(SessionNotFound):
            await store.head(parent)

    # -- API keys -----------------------------------------------------------------------------

    async def test_api_keys_map_to_their_tenant(self, store: EventStore) -> None:
        acme = await store.create_api_key("acme", "ci")
        other = await store.create_api_key("globex")
        assert acme.key.startswith("keel_") and acme.key != other.key
        assert await store.tenant_for_key(acme.key) == "acme"
        assert await store.tenant_for_key(other.key) == "globex"
        assert await store.tenant_for_key("keel_not-a-key") is None
        assert await store.tenant_for_key("") is None
        with pytest.raises(InvalidInput):
            await store.create_api_key("not a tenant!")

    # -- snapshots --------------------------------------------------------------------------

    async def test_snapshots(self, store: EventStore) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        await store.append_input(sid, [message(i) for i in range(5)])
        assert await store.latest_snapshot(sid) is None
        await store.save_snapshot(sid, 3, b"state@3")
        await store.save_snapshot(sid, 6, b"state@6")
        await store.save_snapshot(sid, 4, b"v2@4", version=2)
        latest = await store.latest_snapshot(sid)
        assert latest is not None and (latest.seq, latest.state) == (6, b"state@6")
        other = await store.latest_snapshot(sid, version=2)
        assert other is not None and (other.seq, other.state) == (4, b"v2@4")
        assert await store.latest_snapshot(sid, version=3) is None
        with pytest.raises(InvalidInput):
            await store.save_snapshot(sid, 7, b"beyond the head")
        with pytest.raises(InvalidInput):
            await store.save_snapshot(sid, 0, b"before the log")
        with pytest.raises(SessionNotFound):
            await store.save_snapshot("ses_nope", 1, b"x")

    async def test_a_snapshot_in_parts_writes_only_what_changed(
        self, store: EventStore, backend: Backend
    ) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        await store.append_input(sid, [message(i) for i in range(5)])
        await store.save_snapshot(sid, 3, b"header@3", parts=[b"a", b"b", b"c"])
        latest = await store.latest_snapshot(sid)
        assert latest is not None
        assert (latest.seq, latest.state, latest.parts) == (3, b"header@3", [b"a", b"b", b"c"])
        await store.save_snapshot(sid, 5, b"header@5", parts=[b"b", b"c", b"d", b"b"])
        latest = await store.latest_snapshot(sid)
        assert latest is not None
        assert (latest.seq, latest.parts) == (5, [b"b", b"c", b"d", b"b"])
        # Each part is kept once, by content; the part no snapshot names is gone.
        count = f"SELECT COUNT(*) FROM snapshot_parts WHERE session_id = '{sid}'"
        assert await backend.fetch_value(count) == 3
        await store.save_snapshot(sid, 6, b"whole")
        latest = await store.latest_snapshot(sid)
        assert latest is not None and (latest.state, latest.parts) == (b"whole", [])
        with pytest.raises(InvalidInput):
            await store.save_snapshot(sid, 6, b"header", parts=["not bytes"])  # type: ignore[list-item]

    # -- hash chain -------------------------------------------------------------------------

    async def _session_with_events(self, store: EventStore, count: int) -> str:
        sid = (await store.create_session("acme", CREATED)).session_id
        await store.append_input(sid, [message(i) for i in range(count - 1)])
        return sid

    async def test_verify_passes_on_an_untouched_log(self, store: EventStore) -> None:
        sid = await self._session_with_events(store, 10)
        result = await store.verify(sid)
        assert result.ok and result.checked == 10 and result.bad_seq is None

    async def test_verify_names_an_edited_row(self, store: EventStore, backend: Backend) -> None:
        sid = await self._session_with_events(store, 10)
        await backend.execute(
            f"UPDATE events SET data = replace(data, 'message 4', 'message X') "
            f"WHERE session_id = '{sid}' AND seq = 6"
        )
        result = await store.verify(sid)
        assert not result.ok and result.bad_seq == 6, result

    async def test_verify_names_an_edited_timestamp(
        self, store: EventStore, backend: Backend
    ) -> None:
        sid = await self._session_with_events(store, 10)
        await backend.execute(
            f"UPDATE events SET at = at - 60 WHERE session_id = '{sid}' AND seq = 3"
        )
        assert (await store.verify(sid)).bad_seq == 3

    async def test_verify_names_a_deleted_row(self, store: EventStore, backend: Backend) -> None:
        sid = await self._session_with_events(store, 10)
        await backend.execute(f"DELETE FROM events WHERE session_id = '{sid}' AND seq = 4")
        result = await store.verify(sid)
        assert not result.ok and result.bad_seq == 4 and "missing" in result.problem

    async def test_verify_names_a_truncated_tail(self, store: EventStore, backend: Backend) -> None:
        sid = await self._session_with_events(store, 10)
        await backend.execute(f"DELETE FROM events WHERE session_id = '{sid}' AND seq >= 9")
        result = await store.verify(sid)
        assert not result.ok and result.bad_seq == 9

    async def test_verify_names_forged_rows_past_the_head(
        self, store: EventStore, backend: Backend
    ) -> None:
        sid = await self._session_with_events(store, 3)
        await backend.execute(
            "INSERT INTO events (session_id, seq, type, at, data, hash) VALUES "
            f"('{sid}', 4, 'user.message', 1.0, '{{\"text\": \"forged\"}}', '')"
        )
        result = await store.verify(sid)
        assert not result.ok and result.bad_seq == 4 and "past the head" in result.problem

    async def test_verify_passes_while_appends_commit(self, store: EventStore) -> None:
        sid = await self._session_with_events(store, 2000)

        async def keep_appending() -> None:
            for i in range(50):
                await store.append_input(sid, [message(i)])

        writer = asyncio.create_task(keep_appending())
        results = [await store.verify(sid) for _ in range(3)]
        await writer
        assert all(r.ok for r in results), results
        assert (await store.verify(sid)).checked == 2050

    async def test_verify_names_reordered_rows(self, store: EventStore, backend: Backend) -> None:
        sid = await self._session_with_events(store, 10)
        for statement in (
            f"UPDATE events SET seq = 1000 WHERE session_id = '{sid}' AND seq = 5",
            f"UPDATE events SET seq = 5 WHERE session_id = '{sid}' AND seq = 6",
            f"UPDATE events SET seq = 6 WHERE session_id = '{sid}' AND seq = 1000",
        ):
            await backend.execute(statement)
        result = await store.verify(sid)
        assert not result.ok and result.bad_seq == 5

    async def test_a_tool_result_keeps_its_blob_reference(self, store: EventStore) -> None:
        """Large output lives in the hands' blob store (NATS); the log keeps the reference."""
        sid = (await store.create_session("acme", CREATED)).session_id
        ref = BlobRef(digest="ab" * 32, size=1_000_000, preview="x" * 2000)
        result = ToolResult(call_id="c1", output=ref.preview, blob=ref)
        await store.append_input(sid, [result])
        [_, stored] = await store.read(sid)
        assert stored.event == result

    # -- migrations -------------------------------------------------------------------------

    async def test_migrations_create_exactly_the_declared_tables(
        self, store: EventStore, backend: Backend
    ) -> None:
        assert await backend.schema_diff() == []

    async def test_migrate_is_idempotent(self, store: EventStore) -> None:
        await store.migrate()
        sid = (await store.create_session("acme", CREATED)).session_id
        await store.migrate()
        assert await store.head(sid) == 1
