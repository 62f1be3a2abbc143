"""The invariants of DESIGN.md, asserted on a session's log after a test's run: the checks
are the product's (`drill.check_log`), which `keel drill` runs against a deployment."""

from __future__ import annotations

from collections import Counter

from drill import check_log
from schemas import (
    Recorded,
    SessionCreated,
    ThreadMessageReceived,
    ThreadMessageSent,
    ThreadReplied,
    ThreadSpawned,
)
from session_store import EventStore


async def check_invariants(store: EventStore, session_id: str) -> list[Recorded]:
    """Assert every invariant a drill checks; return the log for further checks."""
    log, violations = await check_log(store, session_id)
    assert not violations, violations
    return log


async def check_thread_invariants(store: EventStore, session_id: str) -> dict[str, list[Recorded]]:
    """Every invariant on the session and each of its threads, and invariant 8: a thread is
    created exactly once for the call that spawns it (and none without one), each message
    between threads is delivered exactly once, and each reply is recorded once. Returns
    every log of the tree by session id."""
    threads = await store.list_threads(session_id)
    logs = {session_id: await check_invariants(store, session_id)}
    for thread in threads:
        assert thread.thread_of == session_id, thread
        logs[thread.session_id] = await check_invariants(store, thread.session_id)
    spawned: Counter[str] = Counter()
    for owner, log in logs.items():
        replies = Counter(r.event.call_id for r in log if isinstance(r.event, ThreadReplied))
        assert all(count == 1 for count in replies.values()), replies
        for record in log:
            event = record.event
            if isinstance(event, ThreadSpawned):
                spawned[event.thread_id] += 1
                created = logs[event.thread_id][0].event
                assert isinstance(created, SessionCreated) and created.thread is not None
                assert created.thread.parent_session_id == owner
                assert created.thread.call_id == event.call_id
                assert _received(logs[event.thread_id], owner, event.call_id) == 1
            elif isinstance(event, ThreadMessageSent):
                assert _received(logs[event.thread_id], owner, event.call_id) == 1, event
    assert set(spawned) == {t.session_id for t in threads}, "a thread without its spawn"
    assert all(count == 1 for count in spawned.values()), f"spawned twice: {spawned}"
    return logs


def _received(log: list[Recorded], sender: str, call_id: str) -> int:
    return sum(
        isinstance(r.event, ThreadMessageReceived)
        and r.event.from_session_id == sender
        and r.event.call_id == call_id
        for r in log
    )
