"""Threads in the coordinator's workspace (`Subagents.workspace = "coordinator"`), on the
real stack: brain processes, NATS, the store, a hands host with the local sandbox. Each
worker starts from the coordinator's git repository, its work is committed on a branch of
its own and merged back when it replies; a brain SIGKILLed after a merge and before the
reply is recorded is replaced, and nothing is merged twice or lost."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import msgspec
import pytest
from nats.js import JetStreamContext

from brain.service import request_attention
from hands import HandsHost
from schemas import (
    AgentSpec,
    Budgets,
    ModelSpec,
    NamedAgent,
    SandboxSpec,
    SessionCreated,
    Subagents,
    ThreadReplied,
    ToolResult,
    UserMessage,
    new_id,
)
from session_store import EventStore
from tests.brain.conftest import SpawnBrain, wait_for_status
from tests.brain.invariants import check_thread_invariants

pytestmark = pytest.mark.slow

INIT = (
    "git init -q -b main && echo base > README && git add README && "
    "git -c user.name=lead -c user.email=lead@localhost commit -q -m base && echo ready"
)
LOOK = "git log --merges --format=%s | sort && cat a.txt b.txt README"


def write(path: str, content: str) -> str:
    return "/tool write_file " + json.dumps({"path": path, "content": content})


def coordinator_spec() -> AgentSpec:
    def turn(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        return {"tool_calls": [{"name": name, "input": given} for name, given in calls]}

    script = [
        turn(("bash", {"command": INIT})),
        turn(
            ("spawn_thread", {"agent": "worker", "task": write("a.txt", "a1\n")}),
            ("spawn_thread", {"agent": "worker", "task": write("b.txt", "b1\n")}),
        ),
        # Sent back: the first worker goes on from its merged work.
        turn(
            (
                "message_thread",
                {"thread_id": "{thread:t1:0}", "message": write("a.txt", "a2\n")},
            )
        ),
        turn(("bash", {"command": LOOK})),
        {"text": "Both workers' work is merged."},
    ]
    worker = AgentSpec(
        model=ModelSpec(provider="keel-scripted", name="keel-scripted"),
        tools=["write_file", "bash"],
        sandbox=SandboxSpec(call_timeout_s=30),
        budgets=Budgets(max_turns=10),
    )
    return AgentSpec(
        model=ModelSpec(provider="scripted", name="lead", options={"script": script}),
        tools=["bash"],
        sandbox=SandboxSpec(call_timeout_s=30),
        budgets=Budgets(max_turns=40),
        subagents=Subagents(
            roster=[NamedAgent(name="worker", spec=worker)], workspace="coordinator"
        ),
    )


async def start(store: EventStore, js: JetStreamContext) -> str:
    session_id = new_id("ses")
    spec = coordinator_spec()
    await store.create_session("acme", SessionCreated(spec=spec), session_id=session_id)
    await store.append_input(session_id, [UserMessage(text="Write a.txt and b.txt.")])
    await request_attention(js, session_id, "user.message")
    return session_id


async def assert_merged_once(store: EventStore, session_id: str) -> None:
    info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=120)
    assert info.status == "completed", info
    logs = await check_thread_invariants(store, session_id)
    coordinator = logs[session_id]
    replies = [r.event for r in coordinator if isinstance(r.event, ThreadReplied)]
    # Each reply recorded once, with its merge (a merge run again after a crash finds its
    # branch merged and says so).
    assert len(replies) == 3 and all(r.checkpoint for r in replies), replies
    assert all(r.merge.startswith(("merged keel/worker-", "keel/worker-")) for r in replies)
    outputs = [r.event.output for r in coordinator if isinstance(r.event, ToolResult)]
    # Three merges in the workspace's history (none twice), every worker's last work in it.
    looked = outputs[-1].splitlines()
    history, files = looked[:3], looked[3:6]
    assert len(set(history)) == 2 and all(h.startswith("keel/worker-") for h in history), looked
    assert files == ["a2", "b1", "base"] and looked[6:] == ["", "[exit code 0]"], looked


async def test_workers_work_in_the_coordinators_repository_and_are_merged_back(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, spawn_brain: SpawnBrain
) -> None:
    spawn_brain()
    session_id = await start(store, js)
    await assert_merged_once(store, session_id)


# After the first merge, after the one of the reply to the message, and after the first
# replies were merged and before they are recorded.
@pytest.mark.parametrize(
    "crash_at", ["after_thread_merge:1", "after_thread_merge:3", "before_thread_result:1"]
)
async def test_a_brain_killed_during_the_merge_step_neither_merges_twice_nor_loses_work(
    crash_at: str,
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    spawn_brain: SpawnBrain,
) -> None:
    first = spawn_brain(crash_at=crash_at, snapshot_every=5)
    session_id = await start(store, js)
    assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
    spawn_brain(snapshot_every=5)
    await assert_merged_once(store, session_id)


async def test_a_coordinator_without_a_workspace_is_told_its_threads_work_was_not_merged(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, spawn_brain: SpawnBrain
) -> None:
    spec = coordinator_spec()
    script = [
        {
            "tool_calls": [
                {
                    "name": "spawn_thread",
                    "input": {"agent": "worker", "task": write("a.txt", "a1\n")},
                }
            ]
        },
        {"text": "done"},
    ]
    spec = msgspec.structs.replace(
        spec, tools=[], model=ModelSpec(provider="scripted", options={"script": script})
    )
    session_id = new_id("ses")
    await store.create_session("acme", SessionCreated(spec=spec), session_id=session_id)
    await store.append_input(session_id, [UserMessage(text="Write a.txt.")])
    await request_attention(js, session_id, "user.message")
    spawn_brain()
    info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=60)
    assert info.status == "completed", info
    logs = await check_thread_invariants(store, session_id)
    [reply] = [r.event for r in logs[session_id] if isinstance(r.event, ThreadReplied)]
    [result] = [r.event for r in logs[session_id] if isinstance(r.event, ToolResult)]
    assert reply.checkpoint is None and not result.is_error
    assert result.output.endswith(
        "was not merged: this agent has no workspace (no tool of its own)]"
    )
