"""`keel trace` of a session with threads: the spans of the session and of every thread
under it, from the store's logs, as one conversation."""

from __future__ import annotations

import msgspec
import pytest

from deploy.trace import trace
from schemas import (
    AgentSpec,
    ModelResponse,
    SessionCreated,
    SessionStatus,
    TextBlock,
    ThreadMessageReceived,
    ThreadOrigin,
    ToolRequested,
    ToolResult,
    Usage,
    UserMessage,
    new_id,
)
from session_store import EventStore
from tests.backends import Backend
from traces import Span, TraceSettings


async def test_keel_trace_sends_a_session_with_its_threads(
    store: EventStore, store_backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    root = (await store.create_session("acme", SessionCreated(spec=AgentSpec()))).session_id
    await store.append_input(root, [UserMessage(text="go"), SessionStatus(status="running")])
    await store.append_input(root, [ToolRequested(call_id="call-1", name="spawn_thread", input={})])
    thread_id = new_id("sthr")
    origin = ThreadOrigin(
        parent_session_id=root,
        call_id="call-1",
        agent_name="worker",
        root_session_id=root,
        thread_id=thread_id,
    )
    created = SessionCreated(spec=AgentSpec(), title="worker", thread=origin)
    received = ThreadMessageReceived(from_session_id=root, call_id="call-1", text="work")
    await store.create_thread(root, thread_id, created, [received])
    await store.append_input(
        thread_id,
        [
            SessionStatus(status="running"),
            ModelResponse(
                content=[TextBlock(text="done")],
                stop_reason="end_turn",
                usage=Usage(input_tokens=5, output_tokens=2),
            ),
            SessionStatus(status="idle", reason="end_turn"),
        ],
    )
    await store.append_input(
        root,
        [ToolResult(call_id="call-1", output="done"), SessionStatus(status="completed")],
    )

    assert await trace(store_backend.url, root, TraceSettings(), json=True) == 0
    lines = capsys.readouterr().out.splitlines()
    spans = [msgspec.json.decode(line, type=Span) for line in lines]
    turns = [s for s in spans if s.name.startswith("invoke_agent")]
    assert sorted(str(t.attributes.get("keel.session.id", root)) for t in turns) == sorted(
        [root, thread_id]
    )
    assert {s.attributes["gen_ai.conversation.id"] for s in spans} == {root}
    thread_turn = next(t for t in turns if "keel.thread.call_span_id" in t.attributes)
    spawn = next(s for s in spans if s.name == "execute_tool spawn_thread")
    assert thread_turn.attributes["keel.thread.call_span_id"] == spawn.span_id
