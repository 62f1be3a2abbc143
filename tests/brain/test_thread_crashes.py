"""A brain killed at every pass of every point of spawning a thread, messaging one and
collecting a reply (the harness's simulated crash: the run ends right there, lease held),
with the brain restarted in place: the coordinator completes, no thread is created twice
or lost, every call has one outcome, no hands call runs twice, and every invariant holds on
every thread of the session.

The tree is driven as brains would drive it from the work queue: a session poked on its
work subject (a new thread, a delivered message, a thread that replied) is woken next.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brain.crashpoints import THREAD_POINTS, WAIT_POINTS
from brain.wake import wake
from schemas import (
    ApprovalGranted,
    SessionCreated,
    ThreadWaiting,
    ToolRequested,
    ToolResult,
    UserMessage,
    new_id,
)
from session_store import EventStore, SqliteEventStore
from tests.brain.harness import Harness, RaisingCrashpoints, SimulatedCrash
from tests.brain.invariants import check_thread_invariants
from tests.brain.threads_scenario import asking_spec, coordinator_spec


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = SqliteEventStore(tmp_path / "keel.db")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


async def start_coordinator(harness: Harness) -> str:
    session_id = new_id("ses")
    created = SessionCreated(spec=coordinator_spec(session_id), title="coordinator")
    await harness.store.create_session("acme", created, session_id=session_id)
    await harness.add_input(session_id, UserMessage(text="Build the three parts."))
    return session_id


async def drive_tree(harness: Harness, root: str, crash_at: str | None) -> bool:
    """Drive every session poked on its work subject until none is; True if the brain was
    killed on the way (and restarted: later runs have no crash point)."""
    crash = RaisingCrashpoints(crash_at, on_crash=harness.hands.outlive_brain)
    deps = harness.deps()
    deps.crash = crash
    crashed = False
    seen = 0
    due = [root]
    for _ in range(500):
        if not due:
            return crashed
        session_id = due.pop(0)
        try:
            while (await wake(session_id, deps)).again:
                pass
        except SimulatedCrash:
            crashed = True
            deps = harness.deps()  # the restarted brain, with the same id
            due.insert(0, session_id)
        poked = [m.subject.rsplit(".", 1)[-1] for m in harness.nats.published[seen:]]
        seen = len(harness.nats.published)
        due += [p for p in poked if p.startswith(("ses_", "sthr_")) and p not in due]
    raise AssertionError("the tree was still busy after 500 runs")


@pytest.mark.parametrize("point", sorted(THREAD_POINTS))
async def test_a_brain_killed_at_every_pass_of_a_thread_point_loses_and_repeats_nothing(
    point: str, store: EventStore
) -> None:
    crashes = 0
    for n in itertools.count(1):
        harness = Harness(store, snapshot_every=5)
        root = await start_coordinator(harness)
        crashed = await drive_tree(harness, root, f"{point}:{n}")
        crashes += crashed
        info = await store.get_session(root)
        assert info.status == "completed", (point, n, info)
        logs = await check_thread_invariants(store, root)
        assert len(logs) == 5, (point, n, list(logs))  # the coordinator, 3 workers, a judge
        for log in logs.values():
            for record in log:
                event = record.event
                if isinstance(event, ToolRequested) and event.name == "bash":
                    assert harness.hands.runs_of(event.call_id) == 1, (point, n, event)
        if not crashed:
            break  # that run never passed the point an n-th time: every pass was tried
    assert crashes >= 1, f"no run reached {point}"


@pytest.mark.parametrize("point", sorted(WAIT_POINTS))
async def test_a_brain_killed_after_noting_a_thread_s_wait_notes_it_once(
    point: str, store: EventStore
) -> None:
    """A thread waits on the user twice (an approval and a custom tool's result, then the
    custom tool's alone); a brain killed after noting either wait in the session, before the
    thread's log says it waits, is followed by one that notes it again: one note per wait."""
    crashes = 0
    for n in itertools.count(1):
        harness = Harness(store, snapshot_every=5)
        root = new_id("ses")
        created = SessionCreated(spec=asking_spec(root), title="coordinator")
        await store.create_session("acme", created, session_id=root)
        await harness.add_input(root, UserMessage(text="Check."))
        crashed = await drive_tree(harness, root, f"{point}:{n}")
        thread = (await store.list_threads(root))[0].session_id
        asked = {
            r.event.name: r.event.call_id
            for r in await store.read(thread)
            if isinstance(r.event, ToolRequested)
        }
        await harness.add_input(thread, ApprovalGranted(call_id=asked["bash"], by="alice"))
        crashed |= await drive_tree(harness, thread, f"{point}:{n}")
        result = ToolResult(call_id=asked["lookup"], output="a word", from_client=True)
        await harness.add_input(thread, result)
        await drive_tree(harness, thread, None)
        crashes += crashed
        info = await store.get_session(root)
        assert info.status == "completed", (point, n, info)
        notes = [r.event for r in await store.read(root) if isinstance(r.event, ThreadWaiting)]
        assert [sorted(c.name for c in note.calls) for note in notes] == [
            ["bash", "lookup"],
            ["lookup"],
        ], (point, n)
        assert harness.hands.runs_of(asked["bash"]) == 1
        await check_thread_invariants(store, root)
        if not crashed:
            break
    assert crashes >= 1, f"no run reached {point}"
