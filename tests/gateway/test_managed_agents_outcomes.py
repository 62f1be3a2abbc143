"""Outcomes, budgets and live message previews, with the official `anthropic` SDK as the
client: real HTTP, NATS, store and brain; only the model is keel's stand-in (`keel-scripted`,
whose grader is satisfied when the worker's last message has every backquoted token of the
rubric, and which answers a defined outcome as a message of its description).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic
from anthropic.lib.sessions import accumulate_managed_agents_event

from brain.service import Brain
from gateway.managed._models import _routes
from session_store import EventStore
from tests.gateway.test_managed_agents import MODEL, send_text, until_idle


@pytest.fixture
async def sdk(gateway_url: str, store: EventStore, brain: Brain) -> AsyncIterator[AsyncAnthropic]:
    key = await store.create_api_key("acme", "sdk")
    client = AsyncAnthropic(base_url=gateway_url, api_key=key.key, max_retries=0)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def priced_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`keel-priced`: keel-scripted at a cent a token, routed by a models file (the gateway
    reads the file once: its cache is emptied before and after)."""
    models = tmp_path / "models.toml"
    models.write_text(
        '[[route]]\nmatch = "keel-priced"\nprovider = "keel-scripted"\n'
        "options = { usd_per_mtok_input = 10000, usd_per_mtok_output = 10000 }\n"
    )
    monkeypatch.setenv("KEEL_MODELS_FILE", str(models))
    _routes.cache_clear()
    try:
        yield "keel-priced"
    finally:
        _routes.cache_clear()


async def a_session(sdk: AsyncAnthropic, model: str = MODEL, **fields: Any) -> Any:
    env = await sdk.beta.environments.create(name="outcomes")
    agent = await sdk.beta.agents.create(name="worker", model=model)
    return await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id, **fields)


def define(description: str, rubric: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "user.define_outcome",
        "description": description,
        "rubric": {"type": "text", "content": rubric},
        **fields,
    }


def texts(events: list[Any]) -> list[str]:
    return [e.content[0].text for e in events if e.type == "agent.message"]


def of_type(events: list[Any], type_: str) -> list[Any]:
    return [e for e in events if e.type == type_]


async def test_an_outcome_the_first_work_meets_is_satisfied_at_its_first_evaluation(
    sdk: AsyncAnthropic,
) -> None:
    session = await a_session(sdk)
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        sent = await sdk.beta.sessions.events.send(
            session.id,
            events=[define("Write of the `moon` and the `tide`.", "Names `moon` and `tide`.")],
        )
        seen = await until_idle(stream)
    [echo] = sent.data
    assert echo.type == "user.define_outcome" and echo.outcome_id.startswith("outc_")
    assert (echo.rubric.content, echo.max_iterations) == ("Names `moon` and `tide`.", 3)
    assert texts(seen) == ["echo: Write of the `moon` and the `tide`."]
    [start] = of_type(seen, "span.outcome_evaluation_start")
    [end] = of_type(seen, "span.outcome_evaluation_end")
    assert (start.outcome_id, start.iteration) == (echo.outcome_id, 0)
    assert (end.outcome_id, end.iteration, end.result) == (echo.outcome_id, 0, "satisfied")
    assert end.outcome_evaluation_start_id == start.id
    assert end.explanation == "the last message contains `moon`, `tide`"
    assert end.usage.output_tokens > 0
    types = [e.type for e in seen]
    assert types.index("agent.message") < types.index("span.outcome_evaluation_start")
    assert seen[-1].stop_reason.type == "end_turn"
    done = await sdk.beta.sessions.retrieve(session.id)
    [evaluation] = done.outcome_evaluations
    assert (evaluation.outcome_id, evaluation.description) == (
        echo.outcome_id,
        "Write of the `moon` and the `tide`.",
    )
    assert (evaluation.result, evaluation.iteration) == ("satisfied", 0)
    assert evaluation.explanation == end.explanation and evaluation.completed_at is not None
    # The grader's spend is the session's too.
    assert (
        done.usage.output_tokens
        > seen[types.index("span.model_request_end")].model_usage.output_tokens
    )
    # The history shows what the stream did, with the same ids.
    listed = [e async for e in sdk.beta.sessions.events.list(session.id)]
    assert [e.id for e in listed if e.type.startswith("span.outcome")] == [start.id, end.id]


async def test_work_that_needs_revision_is_sent_back_with_the_graders_feedback(
    sdk: AsyncAnthropic,
) -> None:
    session = await a_session(sdk)
    outcome = define("Write a haiku.", "Mentions the `moon`.", max_iterations=3)
    # One outcome at a time: a second one in the same send is refused for good (a 409), and
    # nothing is sent.
    with pytest.raises(anthropic.ConflictError) as refused:
        await sdk.beta.sessions.events.send(session.id, events=[outcome, outcome])
    assert "events[1]" in refused.value.message and "still being worked on" in refused.value.message
    assert [e async for e in sdk.beta.sessions.events.list(session.id)] == []
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        await sdk.beta.sessions.events.send(session.id, events=[outcome])
        seen = await until_idle(stream)
    ends = of_type(seen, "span.outcome_evaluation_end")
    assert [(e.iteration, e.result) for e in ends] == [(0, "needs_revision"), (1, "satisfied")]
    assert ends[0].explanation == "the last message lacks `moon`"
    # The worker read the grader's feedback as its next turn, and its answer met the rubric.
    assert texts(seen) == [
        "echo: Write a haiku.",
        "echo: The grader found that your work needs revision: the last message lacks `moon`",
    ]
    starts = of_type(seen, "span.outcome_evaluation_start")
    assert [s.iteration for s in starts] == [0, 1]
    assert [e.outcome_evaluation_start_id for e in ends] == [s.id for s in starts]
    assert len(of_type(seen, "session.status_idle")) == 1
    [evaluation] = (await sdk.beta.sessions.retrieve(session.id)).outcome_evaluations
    assert (evaluation.result, evaluation.iteration) == ("satisfied", 1)


async def test_an_outcome_still_unmet_at_its_last_evaluation_ends_after_a_last_turn(
    sdk: AsyncAnthropic,
) -> None:
    outcome = define("Write a line.", "Has `sun` and `sea`.", max_iterations=1)
    session = await a_session(sdk, initial_events=[outcome])
    [pending] = session.outcome_evaluations
    assert (pending.result, pending.iteration, pending.completed_at) == ("pending", 0, None)
    deadline = time.monotonic() + 30
    while True:
        done = await sdk.beta.sessions.retrieve(session.id)
        result = done.outcome_evaluations[0].result
        if done.status == "idle" and result == "max_iterations_reached":
            break
        assert time.monotonic() < deadline, (done.status, result)
        await asyncio.sleep(0.05)
    [evaluation] = done.outcome_evaluations
    assert (evaluation.iteration, evaluation.explanation) == (
        0,
        "the last message lacks `sun`, `sea`",
    )
    assert evaluation.completed_at is not None
    seen = [e async for e in sdk.beta.sessions.events.list(session.id)]
    [end] = of_type(seen, "span.outcome_evaluation_end")
    assert (end.result, end.iteration) == ("max_iterations_reached", 0)
    # One more turn to say where the work falls short, and no evaluation after it.
    after = seen[seen.index(end) :]
    assert texts(after) == [
        "echo: The grader's last evaluation found your work still short of the outcome, and "
        "no more evaluations will run: the last message lacks `sun`, `sea`"
    ]
    assert not of_type(after, "span.outcome_evaluation_start")
    assert after[-1].type == "session.status_idle" and after[-1].stop_reason.type == "end_turn"


async def test_a_budget_stops_the_session_idle_before_the_model_call_that_would_pass_it(
    sdk: AsyncAnthropic, priced_model: str
) -> None:
    budget = {"type": "limit", "max_list_cost": {"amount": "1", "currency": "USD"}}
    session = await a_session(sdk, model=priced_model, budget=budget)
    assert session.budget is not None and session.budget.type == "limit"
    assert (session.budget.max_list_cost.amount, session.budget.max_list_cost.currency) == (
        "1",
        "USD",
    )
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        await send_text(sdk, session.id, "hello")
        first = await until_idle(stream)
        await send_text(sdk, session.id, "and more")
        second = await until_idle(stream)
    # Nothing was spent before the first turn; its cost reached the budget.
    assert texts(first) == ["echo: hello"] and first[-1].stop_reason.type == "end_turn"
    [usage] = of_type(first, "session.usage")
    assert float(usage.usage.list_cost.amount) >= 1
    assert usage.budget.max_list_cost.amount == "1"
    # The next turn asks for no model call at all.
    assert not of_type(second, "span.model_request_start") and not texts(second)
    assert second[-1].stop_reason.type == "budget_reached"
    done = await sdk.beta.sessions.retrieve(session.id)
    assert done.status == "idle" and done.budget.max_list_cost.amount == "1"
    assert float(done.usage.list_cost.amount) == float(usage.usage.list_cost.amount)


async def test_a_stream_that_asks_for_deltas_previews_a_message_before_it_comes(
    sdk: AsyncAnthropic,
) -> None:
    session = await a_session(sdk)
    previewed = await sdk.beta.sessions.events.stream(session.id, event_deltas=["agent.message"])
    plain = await sdk.beta.sessions.events.stream(session.id)
    async with previewed as stream, plain as quiet:
        await send_text(sdk, session.id, "the quick brown fox")
        seen = await until_idle(stream)
        unpreviewed = await until_idle(quiet)
    types = [e.type for e in seen]
    [message] = of_type(seen, "agent.message")
    [start] = of_type(seen, "event_start")
    deltas = of_type(seen, "event_delta")
    assert types.index("event_start") < types.index("event_delta") < types.index("agent.message")
    assert max(i for i, t in enumerate(types) if t == "event_delta") < types.index("agent.message")
    assert (start.event.type, start.event.id) == ("agent.message", message.id)
    assert {d.event_id for d in deltas} == {message.id} and {d.delta.index for d in deltas} == {0}
    assert "".join(d.delta.content.text for d in deltas) == "echo: the quick brown fox"
    # The SDK's own helper folds the preview into the message the log keeps.
    snapshot = None
    for event in seen[types.index("event_start") : types.index("agent.message")]:
        snapshot = accumulate_managed_agents_event(snapshot, event)
    assert snapshot is not None and snapshot.content[0].text == message.content[0].text
    # Only a stream that asked gets previews; previews are never in the history.
    assert "event_start" not in [e.type for e in unpreviewed]
    assert texts(unpreviewed) == texts(seen)
    listed = [e.type async for e in sdk.beta.sessions.events.list(session.id)]
    assert "event_start" not in listed and "event_delta" not in listed
