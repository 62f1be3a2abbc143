"""Threads on the real stack (NATS, the store, local hands, scripted models): a coordinator
spawns workers and a judge, each a session of its own with its own model, prompt and
context; their replies reach the coordinator once; bad spawn and message calls get clear
errors as their results."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
from nats.js import JetStreamContext

from brain import initial_state, replay
from brain.decide import waits_on_user
from brain.service import Brain, request_attention
from brain.threads import MESSAGE_TOOL, SPAWN_TOOL, waiting_key, waiting_note
from hands import HandsHost
from schemas import (
    AgentSpec,
    ApprovalRequested,
    CustomTool,
    ModelResponse,
    Recorded,
    SessionCreated,
    SessionStatus,
    TextBlock,
    ThreadMessageReceived,
    ThreadOrigin,
    ThreadReplied,
    ToolRequested,
    ToolResult,
    ToolUseBlock,
    UserInterrupt,
    UserMessage,
    event_type,
    new_id,
)
from session_store import EventStore
from tests.brain.conftest import wait_for_status, wait_released
from tests.brain.invariants import check_thread_invariants
from tests.brain.threads_scenario import (
    COORDINATOR_PROMPT,
    JUDGE_PROMPT,
    WORKER_PROMPT,
    coordinator_spec,
)

MakeBrain = Callable[..., Any]


async def start_coordinator(
    store: EventStore, js: JetStreamContext, spec_of: Callable[[str], AgentSpec]
) -> str:
    """A session whose id is chosen first, so its script can name the threads it spawns."""
    session_id = new_id("ses")
    await store.create_session(
        "acme", SessionCreated(spec=spec_of(session_id), title="coordinator"), session_id=session_id
    )
    await store.append_input(session_id, [UserMessage(text="Build the three parts.")])
    await request_attention(js, session_id, "user.message")
    return session_id


async def test_a_coordinator_with_three_workers_and_a_judge_completes(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, make_brain: MakeBrain
) -> None:
    brains: list[Brain] = [await make_brain(), await make_brain()]
    session_id = await start_coordinator(store, js, coordinator_spec)
    info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=90)
    assert info.status == "completed", info
    logs = await check_thread_invariants(store, session_id)
    threads = await store.list_threads(session_id)
    assert [t.title for t in threads].count("worker") == 3
    assert [t.title for t in threads].count("judge") == 1
    for thread in threads:
        log = logs[thread.session_id]
        created = log[0].event
        assert isinstance(created, SessionCreated) and created.thread is not None
        # Its own model and prompt, and a context of its own: its task, not the coordinator's.
        model, prompt = (
            ("worker-model", WORKER_PROMPT)
            if thread.title == "worker"
            else ("judge-model", JUDGE_PROMPT)
        )
        assert (created.spec.model.name, created.spec.system_prompt) == (model, prompt)
        assert created.spec.subagents is None
        inputs = [r.event for r in log if isinstance(r.event, ThreadMessageReceived)]
        assert inputs and inputs[0].from_session_id == session_id
        assert thread.status == "idle", thread
    coordinator = logs[session_id]
    created = coordinator[0].event
    assert isinstance(created, SessionCreated) and created.spec.system_prompt == COORDINATOR_PROMPT
    results = {r.event.call_id: r.event for r in coordinator if isinstance(r.event, ToolResult)}
    replies = [r.event for r in coordinator if isinstance(r.event, ThreadReplied)]
    assert len(replies) == 5  # three workers, the judge, the first worker's second reply
    assert all(not result.is_error for result in results.values()), results
    worker_replies = [results[f"{session_id}:t0:{i}"].output for i in range(3)]
    assert all("part written, ran once" in reply for reply in worker_replies), worker_replies
    assert "PASS" in results[f"{session_id}:t1:0"].output
    assert "the extra check passes too" in results[f"{session_id}:t2:0"].output
    # Each worker ran in its own sandbox, each of its calls once.
    for thread in threads:
        if thread.title == "worker":
            outputs = [r.event for r in logs[thread.session_id] if isinstance(r.event, ToolResult)]
            assert outputs[1].output.splitlines()[0] == "1", outputs
    # The session's spend (what its budgets are checked against) counts its threads'.
    state = replay(coordinator, initial_state(session_id))
    own = sum(r.event.usage.total_tokens for r in coordinator if isinstance(r.event, ModelResponse))
    assert state.usage.total_tokens == own + sum(t.usage.total_tokens for t in threads)
    assert len(brains) == 2


async def test_bad_thread_calls_get_clear_errors_as_their_results(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, make_brain: MakeBrain
) -> None:
    await make_brain()
    hostile: list[dict[str, Any]] = [
        {"agent": "nobody", "task": "x"},
        {"task": "x"},
        {"agent": "worker", "inline": {"name": "w"}, "task": "x"},
        {"inline": {"name": "w", "system": "s"}, "task": "x"},
        {"agent": "worker", "task": ""},
        {"agent": "worker", "task": "x", "extra": 1},
        {"agent": ["worker"], "task": {"deep": [[[[[]]]]]}},
        {"agent": "worker", "task": "x" * 200_000},
    ]
    script = [
        {
            "tool_calls": [
                *({"name": SPAWN_TOOL, "input": arguments} for arguments in hostile),
                {"name": MESSAGE_TOOL, "input": {"thread_id": "sthr_nope", "message": "hi"}},
                {"name": MESSAGE_TOOL, "input": {"thread_id": "../x", "message": "hi"}},
            ]
        },
        {"text": "all refused"},
    ]

    def spec_of(session_id: str) -> AgentSpec:
        spec = coordinator_spec(session_id)
        model = spec.model.__class__(provider="scripted", name="c", options={"script": script})
        return spec.__class__(
            model=model, system_prompt=spec.system_prompt, subagents=spec.subagents
        )

    session_id = await start_coordinator(store, js, spec_of)
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    log = (await check_thread_invariants(store, session_id))[session_id]
    results = [r.event for r in log if isinstance(r.event, ToolResult)]
    assert len(results) == len(hostile) + 2
    assert all(result.is_error for result in results), results
    reasons = [result.output for result in results]
    assert "no agent 'nobody' in the roster" in reasons[0]
    assert "exactly one of" in reasons[1] and "exactly one of" in reasons[2]
    assert "inline agents are not allowed" in reasons[3]
    assert all("invalid input" in reason for reason in reasons[4:8]), reasons
    assert "no thread 'sthr_nope'" in reasons[8]
    assert await store.list_threads(session_id) == []


async def test_cancelling_the_session_cancels_every_thread(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, make_brain: MakeBrain
) -> None:
    await make_brain()
    session_id = await start_coordinator(
        store, js, lambda sid: coordinator_spec(sid, latency_ms=1000)
    )
    deadline = asyncio.get_running_loop().time() + 30
    while len(await store.list_threads(session_id)) < 3:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await store.append_input(session_id, [SessionStatus(status="cancelled", reason="enough")])
    await request_attention(js, session_id, "cancel")
    for thread in await store.list_threads(session_id):
        info = await wait_for_status(store, thread.session_id, {"cancelled"}, timeout_s=30)
        assert info.status == "cancelled"
    await wait_for_status(store, session_id, {"cancelled"})
    # Their cancelled calls' outcomes are still being recorded a moment after the status.
    for thread in [*await store.list_threads(session_id)]:
        await wait_released(store, thread.session_id)
    await wait_released(store, session_id)
    logs = await check_thread_invariants(store, session_id)
    coordinator = logs[session_id]
    requested = {r.event.call_id for r in coordinator if isinstance(r.event, ToolRequested)}
    results = {r.event.call_id for r in coordinator if isinstance(r.event, ToolResult)}
    assert requested == results  # every spawn call has its one outcome


async def test_an_interrupt_of_the_session_reaches_every_thread_at_work(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, make_brain: MakeBrain
) -> None:
    await make_brain()

    def spec_of(session_id: str) -> AgentSpec:
        spec = coordinator_spec(session_id, latency_ms=1000)
        return msgspec.structs.replace(spec, turn_end="idle")

    session_id = await start_coordinator(store, js, spec_of)
    deadline = asyncio.get_running_loop().time() + 30
    while len(await store.list_threads(session_id)) < 3:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await store.append_input(session_id, [UserInterrupt(reason="stop")])
    await request_attention(js, session_id, "interrupt")
    for thread in await store.list_threads(session_id):
        await wait_for_status(store, thread.session_id, {"idle"}, timeout_s=30)
        await wait_released(store, thread.session_id)
        log = await store.read(thread.session_id)
        assert any(isinstance(r.event, UserInterrupt) for r in log), thread.session_id
    info = await wait_for_status(store, session_id, {"idle"})
    await wait_released(store, session_id)
    logs = await check_thread_invariants(store, session_id)
    results = [r.event for r in logs[session_id] if isinstance(r.event, ToolResult)]
    assert len(results) == 3 and all(r.is_error for r in results), results
    assert info.status == "idle"


async def test_an_inline_agent_runs_with_its_own_prompt_and_a_subset_of_the_tools(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, make_brain: MakeBrain
) -> None:
    await make_brain()
    inline = {"name": "helper", "system": "You help.", "tools": ["read_file"]}
    script = [
        {"tool_calls": [{"name": SPAWN_TOOL, "input": {"inline": inline, "task": "Help."}}]},
        {"text": "done"},
    ]

    def spec_of(session_id: str) -> AgentSpec:
        spec = coordinator_spec(session_id)
        assert spec.subagents is not None
        return msgspec.structs.replace(
            spec,
            model=msgspec.structs.replace(spec.model, options={"script": script}),
            tools=["bash", "read_file"],
            subagents=msgspec.structs.replace(spec.subagents, inline=True),
        )

    session_id = await start_coordinator(store, js, spec_of)
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    logs = await check_thread_invariants(store, session_id)
    (thread,) = await store.list_threads(session_id)
    created = logs[thread.session_id][0].event
    assert isinstance(created, SessionCreated)
    assert (thread.title, created.spec.system_prompt, created.spec.tools) == (
        "helper",
        "You help.",
        ["read_file"],
    )
    # The inline agent runs on its spawner's model (the same script, from its first turn):
    # its own spawn call is an unknown tool to it, as a thread spawns no threads.
    results = [r.event for r in logs[thread.session_id] if isinstance(r.event, ToolResult)]
    assert results[0].is_error and "unknown tool 'spawn_thread'" in results[0].output
    replies = [r.event for r in logs[session_id] if isinstance(r.event, ToolResult)]
    assert not replies[0].is_error and replies[0].output.endswith("done")


def test_a_thread_s_wait_on_the_user_names_each_call_where_its_log_asked_for_it() -> None:
    """Pure: the note a thread writes in its session before it waits (`thread.waiting`)."""
    origin = ThreadOrigin(
        parent_session_id="ses_root",
        call_id="call-spawn",
        agent_name="asker",
        root_session_id="ses_root",
        thread_id="sthr_1",
    )
    spec = AgentSpec(
        tools=["bash", "read_file"],
        custom_tools=[CustomTool(name="lookup")],
        permissions={"bash": "ask"},
    )
    uses = [
        ToolUseBlock(call_id="c-read", name="read_file", input={"path": "a"}),
        ToolUseBlock(call_id="c-bash", name="bash", input={"command": "ls"}),
        ToolUseBlock(call_id="c-look", name="lookup", input={"word": "keel"}),
    ]
    events = [
        SessionCreated(spec=spec, thread=origin),
        ModelResponse(content=[TextBlock(text="three calls"), *uses], stop_reason="tool_use"),
        *(ToolRequested(call_id=u.call_id, name=u.name, input=u.input) for u in uses),
        ApprovalRequested(call_id="c-bash", expires_at=2e9),
    ]
    log = [
        Recorded(seq=seq, at=1.0, type=event_type(event), event=event)
        for seq, event in enumerate(events, start=1)
    ]
    state = replay(log, initial_state("sthr_1"))
    note = waiting_note(state, waits_on_user(state, now=1.0))
    assert note is not None and (note.thread_id, note.agent_name) == ("sthr_1", "asker")
    assert [(c.call_id, c.response_seq, c.use_index, c.waits_for) for c in note.calls] == [
        ("c-bash", 2, 1, "approval"),
        ("c-look", 2, 2, "custom"),
    ]
    # The same calls, the same key, whichever run notes them; a session's own log notes none.
    assert waiting_key(note) == waiting_key(waiting_note(state, waits_on_user(state, 1.0)))
    created = Recorded(seq=1, at=1.0, type="session.created", event=SessionCreated(spec=spec))
    own = replay([created, *log[1:]], initial_state("ses_own"))
    assert waiting_note(own, waits_on_user(own, 1.0)) is None
