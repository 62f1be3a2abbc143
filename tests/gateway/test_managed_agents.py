"""The official `anthropic` SDK, unmodified, against keel: real HTTP, NATS, store and brain.

`Anthropic(base_url=keel, api_key=KEY)` and nothing else: the calls of the SDK's own
quickstart (environment, agent, session, send, stream until idle), more turns, custom
tools, errors as the SDK reads them, and its pages.
"""

from __future__ import annotations

import asyncio
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


async def until_idle(stream: Any) -> list[Any]:
    seen = []
    async for event in stream:
        seen.append(event)
        if event.type == "session.status_idle":
            return seen
    raise AssertionError(f"the stream ended before idle: {[e.type for e in seen]}")


async def send_text(sdk: AsyncAnthropic, session_id: str, text: str) -> None:
    await sdk.beta.sessions.events.send(
        session_id, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
    )


async def test_the_quickstart_runs_turn_after_turn_on_one_live_stream(sdk: AsyncAnthropic) -> None:
    env = await sdk.beta.environments.create(name="quickstart")
    agent = await sdk.beta.agents.create(name="echo", model=MODEL)
    assert (agent.version, agent.model.id, env.config.type) == (1, MODEL, "cloud")
    session = await sdk.beta.sessions.create(
        environment_id=env.id, agent={"type": "agent", "id": agent.id, "version": agent.version}
    )
    assert session.status == "idle" and session.agent.id == agent.id
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        await send_text(sdk, session.id, "Hello keel!")
        first = await until_idle(stream)
        await send_text(sdk, session.id, "and again")
        second = await until_idle(stream)
    messages = [e for e in first if e.type == "agent.message"]
    assert [m.content[0].text for m in messages] == ["echo: Hello keel!"]
    assert first[-1].stop_reason.type == "end_turn"
    # The second turn's idle is its own, not the first one's seen again.
    assert [e.content[0].text for e in second if e.type == "agent.message"] == ["echo: and again"]
    assert {e.id for e in first}.isdisjoint({e.id for e in second})
    ends = [e for e in first if e.type == "span.model_request_end"]
    assert ends and ends[0].model_usage.output_tokens > 0
    done = await sdk.beta.sessions.retrieve(session.id)
    assert done.status == "idle" and done.usage.output_tokens > 0
    listed = [e.type async for e in sdk.beta.sessions.events.list(session.id)]
    assert listed.count("user.message") == 2 and listed.count("session.status_idle") == 2


async def test_a_custom_tool_is_answered_by_the_client_once(sdk: AsyncAnthropic) -> None:
    env = await sdk.beta.environments.create(name="client tools")
    agent = await sdk.beta.agents.create(
        name="asker",
        model=MODEL,
        tools=[
            {
                "type": "custom",
                "name": "lookup",
                "description": "Look a word up.",
                "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}},
            }
        ],
    )
    session = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        await send_text(sdk, session.id, '/tool lookup {"word": "keel"}')
        asked = await until_idle(stream)
        use = next(e for e in asked if e.type == "agent.custom_tool_use")
        assert (use.name, use.input) == ("lookup", {"word": "keel"})
        assert asked[-1].stop_reason.type == "requires_action"
        assert asked[-1].stop_reason.event_ids == [use.id]
        assert (await sdk.beta.sessions.retrieve(session.id)).status == "idle"
        answer = {
            "type": "user.custom_tool_result",
            "custom_tool_use_id": use.id,
            "content": [{"type": "text", "text": "the bottom of a ship"}],
        }
        sent = await sdk.beta.sessions.events.send(session.id, events=[answer])
        assert sent.data[0].type == "user.custom_tool_result"
        answered = await until_idle(stream)
    texts = [e.content[0].text for e in answered if e.type == "agent.message"]
    assert texts == ["lookup returned: the bottom of a ship"]
    # The call has its one result: a second is refused, for good (the SDK does not retry).
    with pytest.raises(anthropic.ConflictError) as again:
        await sdk.beta.sessions.events.send(session.id, events=[answer])
    assert again.value.type == "conflict_error"
    assert again.value.response.headers["x-should-retry"] == "false"


async def test_errors_carry_the_type_and_request_id_the_sdk_reads(sdk: AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        await sdk.beta.agents.retrieve("agent_nope")
    assert missing.value.type == "not_found_error" and missing.value.request_id
    agent = await sdk.beta.agents.create(name="v", model=MODEL)
    updated = await sdk.beta.agents.update(agent.id, version=1, system="be brief")
    assert (updated.version, updated.system) == (2, "be brief")
    with pytest.raises(anthropic.ConflictError) as stale:
        await sdk.beta.agents.update(agent.id, version=1, system="lost update")
    assert stale.value.type == "conflict_error"
    assert stale.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(anthropic.BadRequestError) as refused:
        await sdk.beta.agents.create(
            name="m", model=MODEL, mcp_servers=[{"type": "url", "name": "x", "url": "http://x"}]
        )
    assert "mcp_servers" in refused.value.message
    versions = [a.version async for a in sdk.beta.agents.versions.list(agent.id)]
    assert versions == [2, 1]
    first = await sdk.beta.agents.retrieve(agent.id, version=1)
    assert first.system is None


async def test_auto_pagination_visits_every_item_once_and_ends(sdk: AsyncAnthropic) -> None:
    made = {(await sdk.beta.environments.create(name=f"e{i}")).id for i in range(23)}
    seen = [env.id async for env in sdk.beta.environments.list(limit=5)]
    assert len(seen) == 23 and set(seen) == made
    env = next(iter(made))
    agent = await sdk.beta.agents.create(name="paged", model=MODEL)
    sessions = {
        (await sdk.beta.sessions.create(environment_id=env, agent=agent.id)).id for _ in range(7)
    }
    listed = [s.id async for s in sdk.beta.sessions.list(limit=3, agent_id=agent.id)]
    assert len(listed) == 7 and set(listed) == sessions


async def test_the_sync_client_runs_the_same_program(
    gateway_url: str, store: EventStore, brain: Brain
) -> None:
    key = (await store.create_api_key("acme", "sync")).key

    def program() -> list[str]:
        with anthropic.Anthropic(base_url=gateway_url, api_key=key) as client:
            env = client.beta.environments.create(name="sync")
            agent = client.beta.agents.create(name="sync", model=MODEL)
            session = client.beta.sessions.create(environment_id=env.id, agent=agent.id)
            with client.beta.sessions.events.stream(session.id) as stream:
                client.beta.sessions.events.send(
                    session.id,
                    events=[{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}],
                )
                texts = []
                for event in stream:
                    if event.type == "agent.message":
                        texts.append(event.content[0].text)
                    if event.type == "session.status_idle":
                        break
            client.beta.sessions.delete(session.id)
            return texts

    assert await asyncio.to_thread(program) == ["echo: hi"]


async def test_a_stream_resumes_after_its_last_event_id_and_ends_when_deleted(
    sdk: AsyncAnthropic,
) -> None:
    env = await sdk.beta.environments.create(name="resume")
    agent = await sdk.beta.agents.create(name="echo", model=MODEL)
    session = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        await send_text(sdk, session.id, "one")
        first = await until_idle(stream)
    sent = await sdk.beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "two"}]}]
    )
    assert sent.data[0].processed_at.year >= 2026
    # Reconnect from an event of the first turn: what came after it, then live.
    cut = next(i for i, e in enumerate(first) if e.type == "agent.message")
    resumed = await sdk.beta.sessions.events.stream(
        session.id, extra_headers={"Last-Event-ID": first[cut].id}
    )
    async with resumed as stream:
        replayed = await until_idle(stream)
        assert [e.id for e in replayed] == [e.id for e in first[cut + 1 :]]
        second = await until_idle(stream)
        assert [e.content[0].text for e in second if e.type == "agent.message"] == ["echo: two"]
        await sdk.beta.sessions.delete(session.id)
        last = [event async for event in stream]
    assert [e.type for e in last] == ["session.deleted"]
