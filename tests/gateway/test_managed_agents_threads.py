"""Threads through the official `anthropic` SDK, unmodified, against keel: an agent with
`multiagent` (predefined agents, `self`, inline agents; the coordinator form), a session of
it whose primary thread spawns and messages a thread, and the SDK's `sessions.threads`
calls (list, retrieve, archive, events, stream) seeing the threads and their events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic

from brain.service import Brain
from session_store import EventStore

MODEL = "keel-scripted"


@pytest.fixture
async def sdk(gateway_url: str, store: EventStore, brain: Brain) -> AsyncIterator[AsyncAnthropic]:
    key = await store.create_api_key("acme", "sdk")
    client = AsyncAnthropic(base_url=gateway_url, api_key=key.key, max_retries=0)
    try:
        yield client
    finally:
        await client.close()


async def until(stream: Any, kind: str) -> list[Any]:
    seen = []
    async for event in stream:
        seen.append(event)
        if event.type == kind:
            return seen
    raise AssertionError(f"the stream ended before {kind}: {[e.type for e in seen]}")


async def send_text(sdk: AsyncAnthropic, session_id: str, text: str) -> None:
    await sdk.beta.sessions.events.send(
        session_id, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


def tool(name: str, arguments: dict[str, Any]) -> str:
    return f"/tool {name} {json.dumps(arguments)}"


async def coordinator_and_worker(sdk: AsyncAnthropic) -> tuple[Any, Any]:
    """A worker agent, and a coordinator whose threads may run it or itself."""
    worker = await sdk.beta.agents.create(name="worker", model=MODEL, system="You work.")
    coordinator = await sdk.beta.agents.create(
        name="coordinator",
        model=MODEL,
        multiagent={
            "type": "multiagent_20261001",
            "subagents": {"type": "enabled", "predefined_agents": [worker.id, {"type": "self"}]},
        },
    )
    multiagent = coordinator.multiagent
    assert multiagent is not None and multiagent.type == "multiagent_20261001"
    assert multiagent.advisor.type == "disabled" and multiagent.workflows.type == "disabled"
    assert multiagent.subagents.type == "enabled"
    assert multiagent.subagents.inline_agents.type == "enabled"
    assert [(a.id, a.version) for a in multiagent.subagents.predefined_agents] == [
        (worker.id, 1),
        (coordinator.id, 1),
    ]
    return coordinator, worker


async def test_the_sdk_sees_a_session_s_threads_and_their_events(sdk: AsyncAnthropic) -> None:
    env = await sdk.beta.environments.create(name="threads")
    coordinator, worker = await coordinator_and_worker(sdk)
    session = await sdk.beta.sessions.create(environment_id=env.id, agent=coordinator.id)
    defined = session.agent.multiagent.subagents.predefined_agents  # type: ignore[union-attr]
    assert [(a.name, a.system) for a in defined] == [("worker", "You work."), ("coordinator", None)]

    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        await send_text(sdk, session.id, tool("spawn_thread", {"agent": "worker", "task": "hi"}))
        first = await until(stream, "session.status_idle")
    created = next(e for e in first if e.type == "session.thread_created")
    thread_id = created.session_thread_id
    assert created.agent_name == "worker" and thread_id.startswith("sthr_")
    statuses = [(e.type, e.session_thread_id) for e in first if "thread_status" in e.type]
    assert statuses == [
        ("session.thread_status_running", thread_id),
        ("session.thread_status_idle", thread_id),
    ]
    replies = [e.content[0].text for e in first if e.type == "agent.message"]
    assert any("echo: [message from the primary agent]" in r and "hi" in r for r in replies)

    threads = [t async for t in sdk.beta.sessions.threads.list(session.id)]
    assert [(t.id, t.parent_thread_id) for t in threads] == [
        (session.id, None),
        (thread_id, session.id),
    ]
    idle = [t.id async for t in sdk.beta.sessions.threads.list(session.id, statuses=["idle"])]
    assert idle == [session.id, thread_id]
    running = sdk.beta.sessions.threads.list(session.id, statuses=["running"])
    assert [t.id async for t in running] == []
    child = await sdk.beta.sessions.threads.retrieve(thread_id, session_id=session.id)
    assert (child.status, child.agent.type, child.agent.name) == ("idle", "agent", "worker")
    assert child.agent.id == worker.id and child.session_id == session.id
    assert threads[0].agent.id == coordinator.id
    events = [
        e async for e in sdk.beta.sessions.threads.events.list(thread_id, session_id=session.id)
    ]
    received = next(e for e in events if e.type == "agent.thread_message_received")
    assert received.from_session_thread_id == session.id and received.content[0].text == "hi"
    kinds = [e.type for e in events]
    assert kinds.index("session.thread_status_running") < kinds.index("agent.message")
    assert kinds[-1] == "session.thread_status_idle"

    message = tool("message_thread", {"thread_id": thread_id, "message": "again"})
    async with await sdk.beta.sessions.threads.events.stream(
        thread_id, session_id=session.id
    ) as thread_stream:
        await send_text(sdk, session.id, message)
        second = await until(thread_stream, "session.thread_status_idle")
    again = next(e for e in second if e.type == "agent.thread_message_received")
    assert again.content[0].text == "again"
    primary = [e async for e in sdk.beta.sessions.events.list(session.id)]
    sent = next(e for e in primary if e.type == "agent.thread_message_sent")
    assert (sent.to_session_thread_id, sent.to_agent_name) == (thread_id, "worker")

    archived = await sdk.beta.sessions.threads.archive(thread_id, session_id=session.id)
    assert archived.archived_at is not None
    with pytest.raises(anthropic.NotFoundError):
        await sdk.beta.sessions.threads.retrieve("sthr_nope", session_id=session.id)
    with pytest.raises(anthropic.ConflictError):
        await sdk.beta.sessions.threads.archive(session.id, session_id=session.id)


async def test_multiagent_configurations_keel_does_not_run_are_refused_by_name(
    sdk: AsyncAnthropic,
) -> None:
    worker = await sdk.beta.agents.create(name="worker", model=MODEL)
    lead = await sdk.beta.agents.create(
        name="lead", model=MODEL, multiagent={"type": "coordinator", "agents": [worker.id]}
    )
    assert lead.multiagent is not None and lead.multiagent.type == "coordinator"
    assert [a.id for a in lead.multiagent.agents] == [worker.id]  # type: ignore[union-attr]
    refused: list[tuple[dict[str, Any], str]] = [
        (
            {"type": "multiagent_20261001", "advisor": {"type": "enabled", "model": MODEL}},
            "advisor",
        ),
        ({"type": "multiagent_20261001", "workflows": {"type": "enabled"}}, "workflows"),
        ({"type": "coordinator", "agents": [{"type": "advisor", "model": MODEL}]}, "advisor"),
        ({"type": "coordinator", "agents": ["agent_nope"]}, "no agent"),
        ({"type": "coordinator", "agents": [lead.id]}, "depth 1"),
        ({"type": "coordinator", "agents": []}, "agents"),
        (
            {
                "type": "multiagent_20261001",
                "subagents": {"type": "enabled", "inline_agents": {"type": "disabled"}},
            },
            "at least one",
        ),
        ({"type": "multiagent_20261001", "subagents": {"type": "maybe"}}, "subagents"),
    ]
    for multiagent, why in refused:
        with pytest.raises(anthropic.APIStatusError) as error:
            await sdk.beta.agents.create(name="bad", model=MODEL, multiagent=multiagent)  # type: ignore[arg-type]
        assert error.value.status_code in (400, 404, 409, 422), multiagent
        assert why in str(error.value), (why, str(error.value))
