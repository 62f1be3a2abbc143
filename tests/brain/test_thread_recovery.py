"""Threads with brains as real processes, on SQLite and PostgreSQL: a brain SIGKILLed at
each point of spawning a thread, messaging one and collecting a reply is replaced, and the
coordinator completes with no thread created twice or lost, every call one outcome, no
sandbox call run twice, and every invariant on every thread; two brains run the threads of
one session in parallel."""

from __future__ import annotations

import asyncio
import re
import signal

import pytest
from nats.js import JetStreamContext

from brain.service import request_attention
from hands import HandsHost
from schemas import (
    ApprovalGranted,
    SessionCreated,
    SessionStatus,
    ThreadWaiting,
    ToolRequested,
    ToolResult,
    UserMessage,
    new_id,
)
from session_store import EventStore
from tests.brain.conftest import SpawnBrain, wait_for_status
from tests.brain.invariants import check_thread_invariants
from tests.brain.threads_scenario import asking_spec, coordinator_spec

pytestmark = pytest.mark.slow

# Each point at its first pass; spawning and collecting also at a later pass (the judge is
# the second spawn step, the replies come in several steps).
CRASH_POINTS = [
    "after_thread_spawned:1",
    "after_thread_spawned:2",
    "after_thread_created:1",
    "after_thread_created:4",
    "after_message_sent:1",
    "after_message_delivered:1",
    "before_thread_result:1",
    "before_thread_result:3",
    "after_thread_result:1",
    "after_thread_result:3",
]


async def start_coordinator(store: EventStore, js: JetStreamContext, latency_ms: float = 0) -> str:
    session_id = new_id("ses")
    spec = coordinator_spec(session_id, latency_ms=latency_ms)
    await store.create_session(
        "acme", SessionCreated(spec=spec, title="coordinator"), session_id=session_id
    )
    await store.append_input(session_id, [UserMessage(text="Build the three parts.")])
    await request_attention(js, session_id, "user.message")
    return session_id


async def assert_completed_once(store: EventStore, session_id: str) -> None:
    info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=90)
    assert info.status == "completed", info
    logs = await check_thread_invariants(store, session_id)
    assert len(logs) == 5, list(logs)
    workers = [t for t in await store.list_threads(session_id) if t.title == "worker"]
    for worker in workers:
        results = [r.event for r in logs[worker.session_id] if isinstance(r.event, ToolResult)]
        # The worker's second call counts its first one's runs: once.
        assert results[1].output.splitlines()[0] == "1", results


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_a_brain_killed_at_each_thread_point_is_replaced_and_nothing_repeats(
    crash_at: str,
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    spawn_brain: SpawnBrain,
) -> None:
    first = spawn_brain(crash_at=crash_at, snapshot_every=5)
    session_id = await start_coordinator(store, js)
    assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
    spawn_brain(snapshot_every=5)
    await assert_completed_once(store, session_id)


async def test_two_brains_run_the_threads_of_one_session_in_parallel(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, spawn_brain: SpawnBrain
) -> None:
    # Two sessions at most per brain: the three workers cannot all be on one.
    brains = [
        spawn_brain(lease_s=3.0, extra_env={"KEEL_MAX_SESSIONS": "2"}),
        spawn_brain(lease_s=3.0, extra_env={"KEEL_MAX_SESSIONS": "2"}),
    ]
    session_id = await start_coordinator(store, js, latency_ms=300)
    await assert_completed_once(store, session_id)
    threads = {t.session_id for t in await store.list_threads(session_id)}
    driven = [
        {m for m in re.findall(r"session (sthr_\w+): ", brain.output()) if m in threads}
        for brain in brains
    ]
    assert all(driven), driven  # each brain drove threads of the session
    assert all("fenced" not in brain.output() for brain in brains)
    # The workers' first turns overlap in time: they ran at once, not one after another.
    spans = []
    for thread_id in threads:
        log = await store.read(thread_id)
        statuses = [(r.at, r.event.status) for r in log if isinstance(r.event, SessionStatus)]
        if log[0].event.title == "worker":  # type: ignore[union-attr]
            start = next(at for at, status in statuses if status == "running")
            end = next(at for at, status in statuses if status == "idle")
            spans.append((start, end))
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans


@pytest.mark.parametrize("crash_at", ["after_thread_wait_noted:1", "after_thread_wait_noted:2"])
async def test_a_brain_killed_after_noting_a_thread_s_wait_is_replaced_and_notes_it_once(
    crash_at: str,
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    spawn_brain: SpawnBrain,
) -> None:
    """The thread waits on the user for an approval and a custom tool's result, then for
    the result alone; the brain dies after noting the first (or second) wait in the session
    and before the thread's log says it waits. The next brain notes it once more under the
    same key: one note per wait, and the user's answers finish the session."""
    first = spawn_brain(crash_at=crash_at)
    root = new_id("ses")
    created = SessionCreated(spec=asking_spec(root), title="coordinator")
    await store.create_session("acme", created, session_id=root)
    await store.append_input(root, [UserMessage(text="Check.")])
    await request_attention(js, root, "user.message")

    async def waiting_thread() -> tuple[str, dict[str, str]]:
        for _ in range(600):
            threads = await store.list_threads(root)
            if threads and threads[0].status == "waiting":
                log = await store.read(threads[0].session_id)
                asked = {
                    r.event.name: r.event.call_id for r in log if isinstance(r.event, ToolRequested)
                }
                return threads[0].session_id, asked
            await asyncio.sleep(0.1)
        raise AssertionError("the thread never waited on the user")

    if crash_at.endswith(":1"):
        assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
        spawn_brain()
    thread, asked = await waiting_thread()
    await store.append_input(thread, [ApprovalGranted(call_id=asked["bash"], by="alice")])
    await request_attention(js, thread, "approval")
    if crash_at.endswith(":2"):
        assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
        spawn_brain()
    for _ in range(600):
        log = await store.read(thread)
        if any(isinstance(r.event, ToolResult) and r.event.call_id == asked["bash"] for r in log):
            waits = [r for r in log if isinstance(r.event, SessionStatus)]
            if waits[-1].event.status == "waiting":
                break
        await asyncio.sleep(0.1)
    result = ToolResult(call_id=asked["lookup"], output="a word", from_client=True)
    await store.append_input(thread, [result])
    await request_attention(js, thread, "client result")
    info = await wait_for_status(store, root, {"completed", "failed"}, timeout_s=90)
    assert info.status == "completed", info
    notes = [r.event for r in await store.read(root) if isinstance(r.event, ThreadWaiting)]
    assert [sorted(c.name for c in note.calls) for note in notes] == [
        ["bash", "lookup"],
        ["lookup"],
    ]
    await check_thread_invariants(store, root)
