"""Pages and resumed streams of long sessions, folded from kept projections, not the log's
start: they show exactly what a fold from the first event shows.

A session's log is made by the brain with `keel-scripted` (tool calls the client answers,
so calls are open across many seqs), then projected from every place a kept projection can
start; long histories are appended to the store and read with the SDK's own pages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic import AsyncAnthropic

from brain.service import Brain
from gateway.managed._event_ids import parse_event_id
from gateway.managed._folds import Projections, fold
from gateway.managed._projection import Projection
from schemas import UserMessage
from session_store import EventStore

MODEL = "keel-scripted"
LOOKUP = {
    "type": "custom",
    "name": "lookup",
    "description": "Look a word up.",
    "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}},
}


@pytest.fixture
async def reader(gateway_url: str, store: EventStore) -> AsyncIterator[AsyncAnthropic]:
    """The SDK, with no brain behind the gateway: a session's log is what the test wrote."""
    key = await store.create_api_key("acme", "sdk")
    client = AsyncAnthropic(base_url=gateway_url, api_key=key.key, max_retries=0)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def sdk(reader: AsyncAnthropic, brain: Brain) -> AsyncAnthropic:
    return reader


async def until_idle(stream: Any) -> list[Any]:
    seen = []
    async for event in stream:
        seen.append(event)
        if event.type == "session.status_idle":
            return seen
    raise AssertionError(f"the stream ended before idle: {[e.type for e in seen]}")


def text(value: str) -> list[dict[str, Any]]:
    return [{"type": "user.message", "content": [{"type": "text", "text": value}]}]


async def test_a_fold_from_any_kept_projection_shows_what_a_fold_from_the_start_does(
    sdk: AsyncAnthropic, store: EventStore
) -> None:
    env = await sdk.beta.environments.create(name="folds")
    agent = await sdk.beta.agents.create(name="asker", model=MODEL, tools=[LOOKUP])
    session = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        for word in ("keel", "hull", "mast"):
            await sdk.beta.sessions.events.send(
                session.id, events=text(f'/tool lookup {{"word": "{word}"}}')
            )
            asked = await until_idle(stream)
            use = next(e for e in asked if e.type == "agent.custom_tool_use")
            answer = {
                "type": "user.custom_tool_result",
                "custom_tool_use_id": use.id,
                "content": [{"type": "text", "text": f"a {word}"}],
            }
            await sdk.beta.sessions.events.send(session.id, events=[answer])
            await until_idle(stream)
    full = await fold(store, session.id, Projection(), Projections(), keep=True)
    head = await store.head(session.id)
    assert head > 10 and [e["type"] for e in full].count("agent.custom_tool_use") == 3
    for every in (1, 2, 3, 5):
        kept = Projections(every=every)
        assert await fold(store, session.id, Projection(), kept, keep=True) == full
        for cut in range(head + 1):
            start = kept.at_most(session.id, cut)
            begun = start.seq
            assert begun <= cut and cut - begun < every
            after = [e for e in full if parse_event_id(e["id"])[0] > begun]  # type: ignore[index]
            assert await fold(store, session.id, start, kept, keep=True) == after, (every, cut)
            # What it handed out was a copy: the kept projection is where it was.
            assert kept.at_most(session.id, cut).seq == begun


def test_kept_projections_are_bounded_and_drop_the_least_recently_used_session() -> None:
    kept = Projections(every=1, capacity=4)
    for session_id in ("a", "b", "c"):
        projection = Projection()
        for seq in (1, 2):
            projection.seq = seq
            kept.passed(session_id, projection)
    assert kept.at_most("a", 9).seq == 0  # dropped: "b" and "c" were used later
    assert (kept.at_most("b", 9).seq, kept.at_most("c", 1).seq) == (2, 1)


async def test_the_sdk_pages_a_long_history_in_order_once(
    reader: AsyncAnthropic, store: EventStore
) -> None:
    sdk = reader
    env = await sdk.beta.environments.create(name="long")
    agent = await sdk.beta.agents.create(name="quiet", model=MODEL)
    session = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)
    # Straight to the log, and no brain to answer them.
    count = 1234
    for start in range(0, count, 500):
        await store.append_input(
            session.id, [UserMessage(text=f"m{i}") for i in range(start, min(count, start + 500))]
        )
    texts = [f"m{i}" for i in range(count)]
    for limit in (1000, 97):
        listed = [e async for e in sdk.beta.sessions.events.list(session.id, limit=limit)]
        assert [e.content[0].text for e in listed] == texts  # type: ignore[union-attr]
    newest = [e async for e in sdk.beta.sessions.events.list(session.id, limit=300, order="desc")]
    assert [e.content[0].text for e in newest] == texts[::-1]  # type: ignore[union-attr]
    typed = sdk.beta.sessions.events.list(session.id, limit=50, types=["user.message"])
    assert len([e async for e in typed]) == count
    # A stream resumed deep in the history replays what came after, in order, once.
    cut = listed[700].id
    async with await sdk.beta.sessions.events.stream(
        session.id, extra_headers={"Last-Event-ID": cut}
    ) as stream:
        replayed = []
        async for event in stream:
            replayed.append(event.content[0].text)  # type: ignore[union-attr]
            if len(replayed) == count - 701:
                break
    assert replayed == texts[701:]
