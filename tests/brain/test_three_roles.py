"""The shipped three-role example (examples/three_roles) on the real stack: brains as
processes, NATS, the store (SQLite and PostgreSQL), a hands host with the local sandbox and
the example's own scripted models. It completes with every worker's work merged into the
coordinator's repository, and a brain SIGKILLed while a thread is spawned, messaged, its work
merged or its reply collected is replaced with nothing done twice or lost."""

from __future__ import annotations

import asyncio
import signal

import msgspec
import pytest
from nats.js import JetStreamContext

from brain.service import request_attention
from deploy.examples import example_session
from hands import HandsHost
from schemas import (
    AgentSpec,
    Recorded,
    SessionCreated,
    ThreadReplied,
    ToolRequested,
    ToolResult,
    UserMessage,
    new_id,
)
from session_store import EventStore
from tests.brain.conftest import SpawnBrain, wait_for_status
from tests.brain.invariants import check_thread_invariants

pytestmark = pytest.mark.slow

# Each point at a pass the example reaches: the five spawns, the one message, the merges of
# the planner's and the workers' work, the seven replies.
CRASH_POINTS = [
    "after_thread_spawned:2",
    "after_thread_created:3",
    "after_message_sent:1",
    "after_message_delivered:1",
    "after_thread_merge:1",
    "after_thread_merge:4",
    "before_thread_result:4",
    "after_thread_result:5",
]


async def start_example(store: EventStore, js: JetStreamContext) -> str:
    body = example_session("three-roles")
    session_id = new_id("ses")
    created = SessionCreated(spec=msgspec.convert(body["spec"], AgentSpec), title=body["title"])
    await store.create_session("acme", created, session_id=session_id)
    await store.append_input(session_id, [UserMessage(text=body["message"])])
    await request_attention(js, session_id, "user.message")
    return session_id


def calls(log: list[Recorded], name: str) -> list[ToolRequested]:
    return [r.event for r in log if isinstance(r.event, ToolRequested) and r.event.name == name]


def results(log: list[Recorded]) -> list[str]:
    return [r.event.output for r in log if isinstance(r.event, ToolResult)]


async def assert_the_example_completed_once(store: EventStore, session_id: str) -> None:
    info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=120)
    assert info.status == "completed", info
    logs = await check_thread_invariants(store, session_id)
    coordinator = logs[session_id]
    assert len(calls(coordinator, "spawn_thread")) == 5
    assert len(calls(coordinator, "message_thread")) == 1
    by_role: dict[str, list[str]] = {}
    for thread in await store.list_threads(session_id):
        by_role.setdefault(thread.title, []).append(thread.session_id)
    assert {role: len(ids) for role, ids in by_role.items()} == {
        "planner": 1,
        "worker": 2,
        "judge": 2,
    }
    [planner] = by_role["planner"]
    assert results(logs[planner]) == ["wrote 164 bytes to TASKS.md"]
    # Each worker wrote its file once; the one the judge sent back wrote its fix once more.
    written = sorted(results(logs[worker]) for worker in by_role["worker"])
    assert written == [
        ["wrote 51 bytes to words.py"],
        ["wrote 61 bytes to slug.py", "wrote 90 bytes to slug.py"],
    ], written
    # The first judge failed the merged work, the second passed the merged fix.
    verdicts = sorted(results(logs[judge])[0].splitlines()[-3] for judge in by_role["judge"])
    assert verdicts == ["AssertionError: hello,-world!", "SATISFIED"], verdicts
    # The planner's and the workers' work merged into the coordinator's repository, each
    # merge once (the second worker's fix is a second merge of its branch).
    replies = [r.event for r in coordinator if isinstance(r.event, ThreadReplied)]
    assert len([r for r in replies if r.checkpoint is not None]) == 4, replies
    looked = results(coordinator)[-1].splitlines()
    assert len(looked[:4]) == 4 and all(line.startswith("keel/") for line in looked[:4])
    assert looked[4:7] == ["TASKS.md", "slug.py", "words.py"], looked


async def test_the_example_completes(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, spawn_brain: SpawnBrain
) -> None:
    spawn_brain()
    session_id = await start_example(store, js)
    await assert_the_example_completed_once(store, session_id)


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_a_brain_killed_in_the_example_is_replaced_and_nothing_repeats(
    crash_at: str,
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    spawn_brain: SpawnBrain,
) -> None:
    first = spawn_brain(crash_at=crash_at, snapshot_every=5)
    session_id = await start_example(store, js)
    assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
    spawn_brain(snapshot_every=5)
    await assert_the_example_completed_once(store, session_id)
