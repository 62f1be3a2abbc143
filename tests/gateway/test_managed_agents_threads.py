"""Threads through the official `anthropic` SDK, unmodified, against keel: an agent with
`multiagent` (predefined agents, `self`, inline agents; the coordinator form), a session of
it whose primary thread spawns and messages a thread, and the SDK's `sessions.threads`
calls (list, retrieve, archive, events, stream) seeing the threads and their events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic import AsyncAnthropic
from anthropic.lib.tools import beta_async_tool

from brain.service import Brain
from schemas import ApprovalDenied, ApprovalGranted, ToolResult, UserInterrupt
from session_store import EventStore
from tests.gateway.sse import sse

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


async def thread_events_until(
    sdk: AsyncAnthropic, session_id: str, thread_id: str, found: Any
) -> list[Any]:
    """The thread's events, once `found(events)` holds (a thread runs on its own brain)."""
    for _ in range(200):
        events = [
            e async for e in sdk.beta.sessions.threads.events.list(thread_id, session_id=session_id)
        ]
        if found(events):
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"the thread's events never got there: {[e.type for e in events]}")


async def asking_session(sdk: AsyncAnthropic, env_id: str) -> tuple[Any, Any]:
    """A session of a coordinator whose one subagent asks before every tool of its toolset
    and has a custom tool the client runs."""
    asker = await sdk.beta.agents.create(
        name="asker",
        model=MODEL,
        tools=[
            {
                "type": "agent_toolset_20260401",
                "default_config": {"permission_policy": {"type": "always_ask"}},
            },
            {
                "type": "custom",
                "name": "lookup",
                "description": "Look a word up.",
                "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}},
            },
        ],
    )
    lead = await sdk.beta.agents.create(
        name="lead",
        model=MODEL,
        multiagent={
            "type": "multiagent_20261001",
            "subagents": {"type": "enabled", "predefined_agents": [asker.id]},
        },
    )
    session = await sdk.beta.sessions.create(environment_id=env_id, agent=lead.id)
    return session, asker


async def spawned(sdk: AsyncAnthropic, session_id: str, task: str) -> str:
    """The thread a spawn of `task` made."""
    await send_text(sdk, session_id, tool("spawn_thread", {"agent": "asker", "task": task}))
    for _ in range(200):
        threads = [t async for t in sdk.beta.sessions.threads.list(session_id)]
        if len(threads) == 2:
            return threads[1].id
        await asyncio.sleep(0.05)
    raise AssertionError("no thread was spawned")


def waiting_use(kind: str) -> Any:
    return lambda events: any(e.type == kind for e in events)


async def waiting_on_user(sdk: AsyncAnthropic, session_id: str, thread_id: str, kind: str) -> Any:
    """The thread's call of `kind`, once the thread waits for the user to answer it."""
    for _ in range(200):
        # The events first: a thread idle after its call was made waits on it (an idle read
        # before could be the one the thread had before it began).
        events = [
            e async for e in sdk.beta.sessions.threads.events.list(thread_id, session_id=session_id)
        ]
        thread = await sdk.beta.sessions.threads.retrieve(thread_id, session_id=session_id)
        use = [e for e in events if e.type == kind]
        if use and thread.status == "idle":
            return use[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the thread never waited on a {kind}")


async def asking_thread(sdk: AsyncAnthropic) -> tuple[Any, str, Any]:
    """A session, its thread, and the thread's call of `bash` waiting for a confirmation."""
    env = await sdk.beta.environments.create(name="threads")
    session, _ = await asking_session(sdk, env.id)
    thread_id = await spawned(sdk, session.id, '/tool bash {"command": "ls"}')
    use = await waiting_on_user(sdk, session.id, thread_id, "agent.tool_use")
    return session, thread_id, use


def denial(tool_use_id: str) -> Any:
    return {
        "type": "user.tool_confirmation",
        "tool_use_id": tool_use_id,
        "result": "deny",
        "deny_message": "not that",
    }


async def test_a_hostile_client_answers_no_call_it_does_not_own(
    sdk: AsyncAnthropic, store: EventStore
) -> None:
    session, thread_id, use = await asking_thread(sdk)
    deny = denial(use.id)
    # A hostile client: another session of the tenant, a thread that is not this session's,
    # another tenant, a call that waits nowhere.
    other = await sdk.beta.sessions.create(
        environment_id=session.environment_id, agent=session.agent.id
    )
    with pytest.raises(anthropic.ConflictError):
        await sdk.beta.sessions.events.send(other.id, events=[deny])  # type: ignore[list-item]
    other_thread = await spawned(sdk, other.id, '/tool bash {"command": "pwd"}')
    other_use = await waiting_on_user(sdk, other.id, other_thread, "agent.tool_use")
    with pytest.raises(anthropic.ConflictError):
        await sdk.beta.sessions.events.send(session.id, events=[denial(other_use.id)])
    for named in (other_thread, other.id, "sthr_nope"):
        with pytest.raises(anthropic.NotFoundError):
            await sdk.beta.sessions.events.send(
                session.id,
                events=[{**deny, "session_thread_id": named}],  # type: ignore[list-item]
            )
        with pytest.raises(anthropic.NotFoundError):
            await sdk.beta.sessions.events.send(
                session.id, events=[{"type": "user.interrupt", "session_thread_id": named}]
            )
    key = await store.create_api_key("globex", "sdk")
    async with AsyncAnthropic(base_url=str(sdk.base_url), api_key=key.key, max_retries=0) as them:
        with pytest.raises(anthropic.NotFoundError):
            await them.beta.sessions.events.send(session.id, events=[deny])  # type: ignore[list-item]
    with pytest.raises(anthropic.ConflictError):
        await sdk.beta.sessions.events.send(
            session.id,
            events=[{**deny, "tool_use_id": "sevt_999_2"}],  # type: ignore[list-item]
        )

    for thread in (thread_id, other_thread):
        log = [r.event for r in await store.read(thread)]
        assert not [e for e in log if isinstance(e, ApprovalGranted | ApprovalDenied)]


async def test_a_thread_s_calls_are_answered_through_the_session_once(
    sdk: AsyncAnthropic, store: EventStore
) -> None:
    session, thread_id, use = await asking_thread(sdk)
    assert (use.name, use.evaluated_permission) == ("bash", "ask")
    # A thread's ids name it: no call of the session's own shares its id.
    assert use.id.endswith(f"_{thread_id}")
    events = await thread_events_until(
        sdk, session.id, thread_id, waiting_use("session.thread_status_idle")
    )
    waiting = next(e for e in events if e.type == "session.thread_status_idle")
    assert waiting.stop_reason.type == "requires_action"
    assert waiting.stop_reason.event_ids == [use.id]
    deny = denial(use.id)

    # The thread's call is confirmed through the session, once.
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        sent = await sdk.beta.sessions.events.send(session.id, events=[deny])  # type: ignore[list-item]
        assert [e.type for e in sent.data] == ["user.tool_confirmation"]
        with pytest.raises(anthropic.ConflictError):
            await sdk.beta.sessions.events.send(session.id, events=[deny])  # type: ignore[list-item]
        first = await until(stream, "session.thread_status_idle")
        await until(stream, "session.status_idle")
    assert first[-1].session_thread_id == thread_id
    thread_log = [r.event for r in await store.read(thread_id)]
    denied = [e for e in thread_log if isinstance(e, ApprovalDenied)]
    assert len(denied) == 1 and denied[0].reason == "not that"
    primary = [e async for e in sdk.beta.sessions.events.list(session.id)]
    assert not [e for e in primary if e.type == "user.tool_confirmation"]
    replies = [e.content[0].text for e in primary if e.type == "agent.message"]
    assert any("bash was denied" in r for r in replies), replies

    # A custom tool of the thread, answered through the session.
    lookup = tool(
        "message_thread", {"thread_id": thread_id, "message": '/tool lookup {"word": "x"}'}
    )
    await send_text(sdk, session.id, lookup)
    custom = await waiting_on_user(sdk, session.id, thread_id, "agent.custom_tool_use")
    result = {
        "type": "user.custom_tool_result",
        "custom_tool_use_id": custom.id,
        "content": [{"type": "text", "text": "a word"}],
    }
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        await sdk.beta.sessions.events.send(session.id, events=[result])  # type: ignore[list-item]
        answered = await until(stream, "session.status_idle")
    replies = [e.content[0].text for e in answered if e.type == "agent.message"]
    assert any("lookup returned: a word" in r for r in replies), replies

    # The session's usage counts its threads'; each thread's is its own.
    viewed = await sdk.beta.sessions.retrieve(session.id)
    threads = [t async for t in sdk.beta.sessions.threads.list(session.id)]
    own, child = threads[0].usage, threads[1].usage
    assert child.input_tokens and child.output_tokens
    assert viewed.usage.input_tokens == own.input_tokens + child.input_tokens
    assert viewed.usage.output_tokens == own.output_tokens + child.output_tokens


async def test_the_sdks_tool_runner_on_the_session_answers_its_threads_calls(
    sdk: AsyncAnthropic, gateway_url: str, store: EventStore
) -> None:
    """The SDK's runner follows the session's one stream: a thread's calls waiting on the
    user are there (under the ids they have on the thread's stream), with the thread's
    `requires_action`, and the runner's answers reach the thread."""
    env = await sdk.beta.environments.create(name="threads")
    session, _ = await asking_session(sdk, env.id)

    @beta_async_tool
    async def lookup(word: str) -> str:
        """Look a word up."""
        return f"{word}: the bottom of a ship"

    calls = []

    async def run() -> None:
        runner = sdk.beta.sessions.events.tool_runner(session.id, tools=[lookup], max_idle=3.0)
        async for call in runner:
            calls.append(call)

    running = asyncio.create_task(run())
    thread_id = await spawned(sdk, session.id, '/tool lookup {"word": "keel"}')
    await asyncio.wait_for(running, timeout=60)
    # The runner ran the thread's call; the primary's own spawn it saw and left alone (it
    # names no tool of the runner's: keel ran it).
    assert [(c.name, c.is_error) for c in calls if c.posted] == [("lookup", False)]
    assert {c.name for c in calls if not c.posted} <= {"spawn_thread"}
    thread_events = [
        e async for e in sdk.beta.sessions.threads.events.list(thread_id, session_id=session.id)
    ]
    on_thread = next(e for e in thread_events if e.type == "agent.custom_tool_use")
    said = [e.content[0].text for e in thread_events if e.type == "agent.message"]
    assert "lookup returned: keel: the bottom of a ship" in said

    primary = [e async for e in sdk.beta.sessions.events.list(session.id)]
    uses = [e for e in primary if e.type == "agent.custom_tool_use"]
    assert [(u.id, u.session_thread_id, u.input) for u in uses] == [
        (on_thread.id, thread_id, {"word": "keel"})
    ]
    idles = [e for e in primary if e.type == "session.thread_status_idle" and e.session_thread_id]
    assert idles[0].stop_reason.type == "requires_action"
    assert idles[0].stop_reason.event_ids == [on_thread.id]
    assert idles[-1].stop_reason.type == "end_turn"
    assert primary[-1].type == "session.status_idle"
    results = [r for r in await store.read(thread_id) if isinstance(r.event, ToolResult)]
    assert len(results) == 1 and results[0].event.from_client

    # The shown event stands at its place in the session's log: pages one event long, and a
    # stream resumed after it, go on from there.
    paged = [e.id async for e in sdk.beta.sessions.events.list(session.id, limit=1)]
    assert paged == [e.id for e in primary]
    async with (
        httpx2.AsyncClient(base_url=gateway_url, headers=dict(sdk.auth_headers)) as http,
        http.stream(
            "GET",
            f"/v1/sessions/{session.id}/events/stream",
            headers={"Last-Event-ID": primary[0].id},
        ) as response,
    ):
        frames = await sse(response, limit=len(primary) - 1)
    assert [json.loads(f["data"])["id"] for f in frames] == [e.id for e in primary[1:]]
    shown = next(f for f in frames if json.loads(f["data"])["id"] == on_thread.id)
    assert not shown["id"].endswith(thread_id)  # its place here, not its id
    async with (
        httpx2.AsyncClient(base_url=gateway_url, headers=dict(sdk.auth_headers)) as http,
        http.stream(
            "GET",
            f"/v1/sessions/{session.id}/events/stream",
            headers={"Last-Event-ID": shown["id"]},
        ) as response,
    ):
        after = await sse(response, limit=1)
    following = primary[[e.id for e in primary].index(on_thread.id) + 1]
    assert json.loads(after[0]["data"])["id"] == following.id


async def test_a_thread_s_call_asking_is_confirmed_from_the_session_s_stream(
    sdk: AsyncAnthropic,
) -> None:
    session, thread_id, _ = await asking_thread(sdk)
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        primary = [e async for e in sdk.beta.sessions.events.list(session.id)]
        asking = [e for e in primary if e.type == "agent.tool_use" and e.session_thread_id]
        assert [(e.name, e.evaluated_permission, e.session_thread_id) for e in asking] == [
            ("bash", "ask", thread_id)
        ]
        allow = {"type": "user.tool_confirmation", "tool_use_id": asking[0].id, "result": "allow"}
        await sdk.beta.sessions.events.send(session.id, events=[allow])  # type: ignore[list-item]
        await until(stream, "session.status_idle")
    thread_events = [
        e async for e in sdk.beta.sessions.threads.events.list(thread_id, session_id=session.id)
    ]
    results = [e for e in thread_events if e.type == "agent.tool_result"]
    assert [r.tool_use_id for r in results] == [asking[0].id]


async def test_an_interrupt_naming_a_thread_interrupts_that_thread_only(
    sdk: AsyncAnthropic, store: EventStore
) -> None:
    env = await sdk.beta.environments.create(name="threads")
    session, _ = await asking_session(sdk, env.id)
    thread_id = await spawned(sdk, session.id, '/tool bash {"command": "ls"}')
    await waiting_on_user(sdk, session.id, thread_id, "agent.tool_use")
    interrupt: Any = {"type": "user.interrupt", "session_thread_id": thread_id}
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        sent = await sdk.beta.sessions.events.send(
            session.id, events=[interrupt], extra_headers={"Idempotency-Key": "stop-it"}
        )
        assert [(e.type, e.session_thread_id) for e in sent.data] == [  # type: ignore[union-attr]
            ("user.interrupt", thread_id)
        ]
        # A retry with the request's key gets the first answer, and interrupts nothing again.
        retried = await sdk.beta.sessions.events.send(
            session.id, events=[interrupt], extra_headers={"Idempotency-Key": "stop-it"}
        )
        assert [e.id for e in retried.data] == [e.id for e in sent.data]
        seen = await until(stream, "session.status_idle")
    thread_log = [r.event for r in await store.read(thread_id)]
    assert len([e for e in thread_log if isinstance(e, UserInterrupt)]) == 1
    assert "user.interrupt" not in [e.type for e in seen]
    events = await thread_events_until(
        sdk, session.id, thread_id, waiting_use("session.thread_status_idle")
    )
    kinds = [e.type for e in events]
    assert (
        "user.interrupt" in kinds
        and "agent.tool_result" not in kinds[: kinds.index("user.interrupt")]
    )
    primary = [e async for e in sdk.beta.sessions.events.list(session.id)]
    assert "user.interrupt" not in [e.type for e in primary]

    # Without a thread, the session is interrupted, and with it the thread at work for it.
    again = tool("message_thread", {"thread_id": thread_id, "message": '/tool bash {"a": 1}'})
    await send_text(sdk, session.id, again)
    await waiting_on_user(sdk, session.id, thread_id, "agent.tool_use")
    await sdk.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
    await thread_events_until(
        sdk,
        session.id,
        thread_id,
        lambda events: [e.type for e in events].count("user.interrupt") == 2,
    )
    primary = [e async for e in sdk.beta.sessions.events.list(session.id)]
    assert [e.type for e in primary].count("user.interrupt") == 1

    # An archived thread takes no more input, an interrupt included.
    await sdk.beta.sessions.threads.archive(thread_id, session_id=session.id)
    with pytest.raises(anthropic.ConflictError):
        await sdk.beta.sessions.events.send(
            session.id, events=[{"type": "user.interrupt", "session_thread_id": thread_id}]
        )
