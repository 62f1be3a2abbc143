"""keel's `keel_context_resets` on a Managed Agents agent: an additive extension the official
SDK sends in `extra_body`, kept with the agent's version and given to its sessions' specs,
refused with a 400 that names it where it cannot work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic

from brain.service import Brain
from schemas import ContextResets, SessionCreated
from session_store import EventStore

MODEL = "keel-scripted"
TOOLSET = [{"type": "agent_toolset_20260401"}]
RESETS = {"handoff_files": ["PLAN.md", "PROGRESS.md"], "max_turns": 5}


@pytest.fixture
async def sdk(gateway_url: str, store: EventStore, brain: Brain) -> AsyncIterator[AsyncAnthropic]:
    key = await store.create_api_key("acme", "sdk")
    client = AsyncAnthropic(base_url=gateway_url, api_key=key.key, max_retries=0)
    try:
        yield client
    finally:
        await client.close()


async def test_an_agent_s_context_resets_reach_its_sessions_spec(
    sdk: AsyncAnthropic, store: EventStore
) -> None:
    agent = await sdk.beta.agents.create(
        name="shifts", model=MODEL, tools=TOOLSET, extra_body={"keel_context_resets": RESETS}
    )
    shown = (await sdk.beta.agents.retrieve(agent.id)).model_extra or {}
    assert shown["keel_context_resets"]["max_turns"] == 5
    env = await sdk.beta.environments.create(name="cloud")
    session = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)
    created = (await store.read(session.id))[0].event
    assert isinstance(created, SessionCreated)
    assert created.spec.context_resets == ContextResets(
        handoff_files=["PLAN.md", "PROGRESS.md"], max_turns=5
    )
    # An update that leaves it out keeps it; null removes it.
    kept = await sdk.beta.agents.update(agent.id, version=1, system="Work in shifts.")
    assert (kept.model_extra or {})["keel_context_resets"] == shown["keel_context_resets"]
    removed = await sdk.beta.agents.update(
        agent.id, version=2, extra_body={"keel_context_resets": None}
    )
    assert "keel_context_resets" not in (removed.model_extra or {})
    plain = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)
    created = (await store.read(plain.id))[0].event
    assert isinstance(created, SessionCreated) and created.spec.context_resets is None


async def test_context_resets_are_checked_and_work_without_keel_s_sandbox(
    sdk: AsyncAnthropic, store: EventStore
) -> None:
    with pytest.raises(anthropic.UnprocessableEntityError, match="handoff_files"):
        await sdk.beta.agents.create(
            name="outside",
            model=MODEL,
            tools=TOOLSET,
            extra_body={"keel_context_resets": {"handoff_files": ["../PLAN.md"]}},
        )
    # In a self-hosted environment keel reads no workspace: each iteration starts from the
    # goal and the rubric alone, without a ratchet (see brain/iterations.py).
    agent = await sdk.beta.agents.create(
        name="shifts", model=MODEL, tools=TOOLSET, extra_body={"keel_context_resets": RESETS}
    )
    mine = await sdk.beta.environments.create(name="mine", config={"type": "self_hosted"})
    session = await sdk.beta.sessions.create(environment_id=mine.id, agent=agent.id)
    created = (await store.read(session.id))[0].event
    assert isinstance(created, SessionCreated) and created.spec.context_resets is not None
    assert not created.spec.has_sandbox()


async def until_idle(stream: Any) -> list[Any]:
    seen = []
    async for event in stream:
        seen.append(event)
        if event.type == "session.status_idle":
            return seen
    raise AssertionError(f"the stream ended before idle: {[e.type for e in seen]}")


async def test_a_later_iteration_s_fresh_context_shows_as_a_compaction(
    sdk: AsyncAnthropic,
) -> None:
    """One model response per iteration: the second turn starts iteration 2 from a fresh
    context, which the Managed Agents view shows as `agent.thread_context_compacted`."""
    agent = await sdk.beta.agents.create(
        name="shifts",
        model=MODEL,
        tools=TOOLSET,
        extra_body={"keel_context_resets": {"max_turns": 1}},
    )
    mine = await sdk.beta.environments.create(name="mine", config={"type": "self_hosted"})
    session = await sdk.beta.sessions.create(environment_id=mine.id, agent=agent.id)
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        for text in ("Hello.", "Again."):
            await sdk.beta.sessions.events.send(
                session.id,
                events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}],
            )
            await until_idle(stream)
    kinds = [e.type async for e in sdk.beta.sessions.events.list(session.id)]
    assert kinds.count("agent.thread_context_compacted") == 1
    assert kinds.index("agent.thread_context_compacted") > kinds.index("user.message")
    assert kinds.count("agent.message") == 2
