"""Group commit: the pure planning of a batch (`_batch.py`), and the queue going on after a
batch that fails for a bug (`_group_commit.py`)."""

from __future__ import annotations

import asyncio

import pytest

from session_store import (
    Appended,
    Conflict,
    Fenced,
    SessionNotFound,
    StoreHealth,
    StoreUnavailable,
)
from session_store._batch import PendingAppend, Plan, heads_of, plan_batch
from session_store._group_commit import GroupCommit
from session_store._hashing import GENESIS, chain_hash
from session_store._metrics import StoreMetrics


def pending(sid: str, expect: int | None, epoch: int | None, n: int = 1) -> PendingAppend:
    future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
    rows = [("user.message", f'{{"text": "{i}"}}') for i in range(n)]
    return PendingAppend(sid, rows, expect, epoch, future)


async def test_each_append_is_judged_against_the_head_its_predecessors_left() -> None:
    heads = heads_of([("a", 1, 7, GENESIS, "idle", ""), ("b", 4, 2, GENESIS, "running", "")])
    batch = [
        pending("a", 1, 7, n=2),  # ok: a -> 3
        pending("a", 1, 7),  # stale: a is at 3 now
        pending("a", 3, 6),  # old epoch: fenced, even though the seq matches
        pending("b", None, None),  # unfenced input: b -> 5
        pending("zzz", 1, 1),  # unknown session
        pending("a", 3, 7),  # ok: a -> 4
    ]
    plan = plan_batch(batch, heads, at=123.0)
    assert [(p.session_id, done.head_seq) for p, done in plan.accepted] == [
        ("a", 3),
        ("b", 5),
        ("a", 4),
    ]
    assert {done.at for _, done in plan.accepted} == {123.0}
    assert [type(error) for _, error in plan.rejected] == [Conflict, Fenced, SessionNotFound]
    assert [(r["session_id"], r["seq"]) for r in plan.event_rows] == [
        ("a", 2),
        ("a", 3),
        ("b", 5),
        ("a", 4),
    ]
    # The chain runs through the batch: each hash covers the one before it.
    first, second = plan.event_rows[0], plan.event_rows[1]
    assert first["hash"] == chain_hash(GENESIS, "a", 2, "user.message", 123.0, '{"text": "0"}')
    assert second["hash"] == chain_hash(
        first["hash"],
        "a",
        3,
        "user.message",
        123.0,
        '{"text": "1"}',  # type: ignore[arg-type]
    )
    assert plan.session_rows["a"].head_seq == 4 and plan.session_rows["b"].head_seq == 5


async def test_a_batch_that_fails_for_a_bug_does_not_strand_later_appends() -> None:
    calls = 0

    async def broken_once(batch: list[PendingAppend]) -> Plan:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return plan_batch(batch, heads_of([("a", 1, 7, GENESIS, "idle", "")]), at=123.0)

    commit = GroupCommit(broken_once, StoreHealth(), StoreMetrics("sqlite"))
    with pytest.raises(StoreUnavailable, match="a bug"):
        await commit.append(pending("a", 1, 7))
    assert await commit.append(pending("a", 1, 7)) == Appended(head_seq=2, at=123.0)
