"""The invariants of DESIGN.md, checked on a session's log after a run or a drill."""

from __future__ import annotations

from collections import Counter

from brain import STATE_VERSION, decode_state, encode_state, initial_state, replay
from schemas import (
    TERMINAL_STATUSES,
    ApprovalGranted,
    ApprovalRequested,
    Recorded,
    SessionCreated,
    ThreadMessageReceived,
    ThreadMessageSent,
    ThreadReplied,
    ThreadSpawned,
    ToolDispatched,
    ToolRequested,
    ToolResult,
)
from session_store import EventStore


async def check_invariants(store: EventStore, session_id: str) -> list[Recorded]:
    """Assert every invariant a drill checks; return the log for further checks."""
    log = await store.read(session_id)
    # 1. Nothing lost: seq is gapless and the hash chain verifies.
    assert [r.seq for r in log] == list(range(1, len(log) + 1))
    assert (await store.head(session_id)) == len(log)
    verification = await store.verify(session_id)
    assert verification.ok, verification
    # 3. Every tool.requested ends in exactly one outcome (at most one while the session
    # can still go on); no result answers nothing.
    requested = [r.event.call_id for r in log if isinstance(r.event, ToolRequested)]
    results = Counter(r.event.call_id for r in log if isinstance(r.event, ToolResult))
    assert len(requested) == len(set(requested)), "a call_id was requested twice"
    assert set(results) <= set(requested)
    assert all(count == 1 for count in results.values()), results
    status = (await store.get_session(session_id)).status
    if status in TERMINAL_STATUSES:
        assert set(results) == set(requested), "a finished session left a call open"
    # A call is dispatched only after it was requested, and never after its result.
    seen: dict[str, str] = {}
    for record in log:
        event = record.event
        if isinstance(event, ToolRequested):
            seen[event.call_id] = "requested"
        elif isinstance(event, ToolDispatched):
            assert seen.get(event.call_id) in ("requested", "granted", "dispatched"), event
            seen[event.call_id] = "dispatched"
        elif isinstance(event, ApprovalRequested):
            seen[event.call_id] = "asked"
        elif isinstance(event, ApprovalGranted):
            seen[event.call_id] = "granted"
        elif isinstance(event, ToolResult):
            seen[event.call_id] = "done"
    # 6. An approval-gated call never runs without a prior grant.
    asked = {r.event.call_id for r in log if isinstance(r.event, ApprovalRequested)}
    for call_id in asked:
        kinds = [
            type(r.event).__name__
            for r in log
            if getattr(r.event, "call_id", None) == call_id
            and isinstance(r.event, ApprovalGranted | ToolDispatched)
        ]
        if "ToolDispatched" in kinds:
            assert kinds.index("ApprovalGranted") < kinds.index("ToolDispatched"), kinds
    # 4. Snapshot + tail equals full replay.
    full = replay(log, initial_state(session_id))
    snapshot = await store.latest_snapshot(session_id, STATE_VERSION)
    if snapshot is not None:
        resumed = replay(log[snapshot.seq :], decode_state(snapshot.state, snapshot.parts))
        assert encode_state(resumed) == encode_state(full)
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
