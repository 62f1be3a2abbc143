"""What a session meets besides the happy path: model errors, approvals, a completion check,
budgets, unknown tools, a hands host dying mid-call, live deltas. Real NATS, a real store
(SQLite), real hands (bubblewrap); the model is scripted or a local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from brain.providers import RetryPolicy
from brain.service import request_attention
from hands import HandsHost
from schemas import (
    AgentSpec,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    Budgets,
    CompletionCondition,
    JudgeVerdict,
    ModelDelta,
    ModelResponse,
    ModelSpec,
    OutcomeDefined,
    OutcomeEvaluated,
    SessionCreated,
    SessionStatus,
    ToolDispatched,
    ToolResult,
    UserMessage,
    delta_subject,
)
from session_store import EventStore
from tests.brain.conftest import start_session, wait_for_status, wait_released
from tests.brain.invariants import check_invariants
from tests.brain.providers.model_server import ModelServer, Reply, openai_chunks
from tests.nats_server import NatsServer

FAST_RETRIES = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, timeout_s=1.0)


@pytest.fixture(params=["sqlite"])
def store_backend(request: pytest.FixtureRequest, sqlite_store_backend: Any) -> Any:
    """These flows are about the brain, not the backend: SQLite is enough here."""
    return sqlite_store_backend


def scripted(turns: list[dict[str, Any]], **fields: Any) -> AgentSpec:
    return AgentSpec(
        model=ModelSpec(options={"script": turns}),
        tools=["bash", "read_file", "write_file"],
        **fields,
    )


def bash(command: str) -> dict[str, Any]:
    return {"name": "bash", "input": {"command": command}}


async def events_of(store: EventStore, session_id: str, kind: type) -> list[Any]:
    return [r.event for r in await store.read(session_id) if isinstance(r.event, kind)]


async def wait_for(
    store: EventStore, session_id: str, kind: type, timeout_s: float = 20.0
) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while not (found := await events_of(store, session_id, kind)):
        assert time.monotonic() < deadline, f"no {kind.__name__} in {timeout_s}s"
        await asyncio.sleep(0.02)
    return found


# -- the model ------------------------------------------------------------------------------


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    server = ModelServer().start()
    try:
        yield server
    finally:
        server.close()


def openai_spec(server: ModelServer) -> AgentSpec:
    return AgentSpec(
        model=ModelSpec(provider="openai", name="local-model", base_url=f"{server.url}/v1")
    )


def text_reply(text: str) -> Reply:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "local-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    return Reply(
        chunks=openai_chunks(
            chunk({"role": "assistant", "content": text}),
            chunk({}, finish="stop"),
        ),
        headers={"content-type": "text/event-stream"},
    )


async def test_a_rate_limit_then_success_is_retried_and_the_session_completes(
    model_server: ModelServer,  # first: torn down after the brain closes its connections
    store: EventStore,
    js: JetStreamContext,
    make_brain: Callable[..., Any],
) -> None:
    model_server.reply(
        Reply(status=429, body={"error": {"message": "slow down"}}, headers={"retry-after": "0"}),
        text_reply("Hello after a retry."),
    )
    await make_brain(model_retry=FAST_RETRIES)
    session_id = await start_session(store, js, openai_spec(model_server))
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    [response] = await events_of(store, session_id, ModelResponse)
    assert response.content[0].text == "Hello after a retry."
    assert len(model_server.received) == 2


@pytest.mark.parametrize(
    ("replies", "reason"),
    [
        (
            [Reply(chunks=(b"data: {not json\n\n",), headers={"content-type": "text/event-stream"})]
            * 3,
            "the model failed 3 times",
        ),
        ([Reply(delay_s=3.0, body={})] * 3, "no response within 1s"),
        ([Reply(status=401, body={"error": {"message": "bad key"}})], "401"),
    ],
    ids=["malformed", "timeout", "unauthorized"],
)
async def test_a_model_that_keeps_failing_fails_the_session_with_the_reason(
    replies: list[Reply],
    reason: str,
    model_server: ModelServer,  # first: torn down after the brain closes its connections
    store: EventStore,
    js: JetStreamContext,
    make_brain: Callable[..., Any],
) -> None:
    model_server.reply(*replies)
    await make_brain(model_retry=FAST_RETRIES)
    session_id = await start_session(store, js, openai_spec(model_server))
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "failed"
    assert info.status_reason.startswith("the model failed"), info.status_reason
    assert reason in info.status_reason, info.status_reason
    await wait_released(store, session_id)  # never stuck: released, and terminal
    await check_invariants(store, session_id)


async def test_streamed_deltas_go_out_live_on_nats_and_are_never_persisted(
    store: EventStore,
    js: JetStreamContext,
    make_brain: Callable[..., Any],
    nats_server: NatsServer,
) -> None:
    text = "one two three four"
    viewer = await nats.connect(nats_server.url)
    deltas: list[ModelDelta] = []

    async def on_delta(msg: Msg) -> None:
        deltas.append(msgspec.json.decode(msg.data, type=ModelDelta))

    subscription = await viewer.subscribe(delta_subject("*"), cb=on_delta)
    await make_brain()
    session_id = await start_session(store, js, scripted([{"text": text}]))
    await wait_for_status(store, session_id, {"completed"})
    await asyncio.sleep(0.2)
    await subscription.unsubscribe()
    await viewer.drain()
    assert "".join(d.text for d in deltas).strip() == text
    assert {d.session_id for d in deltas} == {session_id}
    records = await store.read(session_id)
    stored = json.dumps([r.type for r in records])
    assert "delta" not in stored
    # Each names what the model was shown: the response is recorded right after it.
    [response] = [r.seq for r in records if isinstance(r.event, ModelResponse)]
    assert {d.context_seq for d in deltas} == {response - 1}


# -- approvals ------------------------------------------------------------------------------


async def test_an_approval_gated_call_runs_only_after_the_grant(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain()
    spec = scripted(
        [{"tool_calls": [bash("echo approved >> ran.txt && cat ran.txt")]}, {"text": "done"}],
        permissions={"bash": "ask"},
    )
    session_id = await start_session(store, js, spec)
    [asked] = await wait_for(store, session_id, ApprovalRequested)
    info = await wait_for_status(store, session_id, {"waiting"})
    await wait_released(store, session_id)  # waiting for a person holds no brain
    assert await events_of(store, session_id, ToolDispatched) == []
    await store.append_input(session_id, [ApprovalGranted(call_id=asked.call_id, by="alice")])
    await request_attention(js, session_id, "approval")
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    [result] = await events_of(store, session_id, ToolResult)
    assert result.output.startswith("approved")
    await check_invariants(store, session_id)


async def test_an_approval_nobody_gives_expires_and_the_call_never_runs(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain()
    spec = scripted(
        [{"tool_calls": [bash("touch ran.txt")]}, {"text": "I could not run it."}],
        permissions={"bash": "ask"},
        approval_timeout_s=0.5,
    )
    session_id = await start_session(store, js, spec)
    # Nobody holds the session while it waits: the durable timer brings it back.
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    assert len(await events_of(store, session_id, ApprovalExpired)) == 1
    [result] = await events_of(store, session_id, ToolResult)
    assert result.is_error and "expired" in result.output
    assert await events_of(store, session_id, ToolDispatched) == []
    await check_invariants(store, session_id)


# -- guards and checks ----------------------------------------------------------------------


async def test_a_command_check_sends_the_model_back_until_it_passes(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain()
    spec = scripted(
        [
            {"text": "Done, I think."},
            {"tool_calls": [{"name": "write_file", "input": {"path": "ok", "content": "y"}}]},
            {"text": "Now it is done."},
        ],
        completion=CompletionCondition(kind="command", command="test -f ok"),
    )
    session_id = await start_session(store, js, spec)
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    verdicts = await events_of(store, session_id, JudgeVerdict)
    assert [v.passed for v in verdicts] == [False, True]
    assert "command" in info.status_reason
    await check_invariants(store, session_id)


async def test_a_judge_model_sends_the_worker_back_until_it_passes(
    store: EventStore, js: JetStreamContext, make_brain: Callable[..., Any]
) -> None:
    await make_brain()
    # The scripted judge plays the turn the worker is at: it judges after turns 1 and 2.
    judge = ModelSpec(
        options={"script": [{}, {"text": "FAIL: there are no tests"}, {"text": "PASS: tested"}]}
    )
    spec = scripted(
        [{"text": "Done."}, {"text": "Added the tests."}],
        completion=CompletionCondition(kind="judge", judge_model=judge, criteria="tested code"),
    )
    session_id = await start_session(store, js, spec)
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    verdicts = await events_of(store, session_id, JudgeVerdict)
    assert [(v.passed, v.judge) for v in verdicts] == [(False, "model"), (True, "model")]
    assert verdicts[0].detail == "FAIL: there are no tests"
    assert len(await events_of(store, session_id, ModelResponse)) == 2


async def test_a_slow_grader_is_heard_from_and_its_feedback_sends_the_worker_back(
    store: EventStore, js: JetStreamContext, make_brain: Callable[..., Any]
) -> None:
    await make_brain(grader_heartbeat_s=0.1)
    # The scripted grader plays the turn the worker is at: it grades after turns 1 and 2.
    grader = ModelSpec(
        options={
            "script": [
                {},
                {"text": "NEEDS_REVISION\nno moon in it", "latency_ms": 450},
                {"text": "SATISFIED\nthe moon is there", "input_tokens": 7},
            ]
        }
    )
    spec = scripted(
        [{"text": "Sun on the water."}, {"text": "Moon on the water."}],
        # No completion check of its own: the judge model is the outcome's grader.
        completion=CompletionCondition(judge_model=grader),
    )
    info = await store.create_session("acme", SessionCreated(spec=spec))
    defined = OutcomeDefined(
        outcome_id="outc_1", description="Write a line.", rubric="Has the `moon`."
    )
    await store.append_input(info.session_id, [defined])
    await request_attention(js, info.session_id, "outcome.defined")
    done = await wait_for_status(store, info.session_id, {"completed", "failed"})
    assert done.status == "completed", done
    records = await store.read(info.session_id)
    outcome_events = [
        r.event for r in records if r.type.startswith("outcome.") and r.type != "outcome.defined"
    ]
    kinds = [type(e).__name__ for e in outcome_events]
    assert kinds[0] == "OutcomeEvaluationStarted" and kinds.count("OutcomeEvaluationStarted") == 2
    assert kinds.count("OutcomeEvaluationOngoing") >= 2
    ended = [e for e in outcome_events if isinstance(e, OutcomeEvaluated)]
    assert [(e.iteration, e.result, e.explanation) for e in ended] == [
        (0, "needs_revision", "no moon in it"),
        (1, "satisfied", "the moon is there"),
    ]
    assert done.usage.input_tokens == 7 and done.turns == 2
    await check_invariants(store, info.session_id)


async def test_a_budget_pauses_the_session_with_the_reason(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain()
    turns = [{"tool_calls": [bash(f"echo {i}")]} for i in range(5)]
    spec = scripted(turns, budgets=Budgets(max_turns=2))
    session_id = await start_session(store, js, spec)
    info = await wait_for_status(store, session_id, {"paused", "completed", "failed"})
    assert info.status == "paused"
    assert info.status_reason == "the turns budget is reached: 2 of 2"
    assert len(await events_of(store, session_id, ModelResponse)) == 2
    await check_invariants(store, session_id)


async def test_a_tool_the_session_lacks_is_answered_with_an_error(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain()
    spec = scripted([{"tool_calls": [{"name": "rm_rf", "input": {}}]}, {"text": "ok"}])
    session_id = await start_session(store, js, spec)
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    [result] = await events_of(store, session_id, ToolResult)
    assert result.is_error and "unknown tool 'rm_rf'" in result.output
    await check_invariants(store, session_id)


# -- the hands die ----------------------------------------------------------------------------


async def test_a_call_whose_hands_died_ends_as_unknown_and_the_session_goes_on(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain(probe_every_s=0.3, lost_after_s=1.0)
    spec = scripted([{"tool_calls": [bash("sleep 60")]}, {"text": "That call was lost."}])
    session_id = await start_session(store, js, spec)
    await wait_for(store, session_id, ToolDispatched)
    await hands_host.close(destroy_sandboxes=True)  # the host and its sandbox are gone
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    [result] = await events_of(store, session_id, ToolResult)
    assert (result.outcome, result.is_error, result.sandbox_lost) == ("unknown", True, True)
    await check_invariants(store, session_id)


async def test_an_outcome_after_the_brain_let_go_wakes_the_session(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain(hold_s=0.3)
    spec = scripted([{"tool_calls": [bash("sleep 2 && echo late")]}, {"text": "ok"}])
    session_id = await start_session(store, js, spec)
    await wait_for_status(store, session_id, {"waiting"})
    await wait_released(store, session_id)  # let go while the call runs
    started = time.monotonic()
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    # Woken by the outcome, not by the half-minute timer a released session falls back on.
    assert time.monotonic() - started < 10
    assert info.status == "completed", info
    [result] = await events_of(store, session_id, ToolResult)
    assert result.output.startswith("late")
    await check_invariants(store, session_id)


async def test_input_whose_announcement_was_lost_is_still_answered(
    store: EventStore, js: JetStreamContext, make_brain: Callable[..., Any]
) -> None:
    """The gateway appended input and died before putting the session on the work queue:
    the store's input timer makes the session due, and the sweeper hands it to a brain."""
    await make_brain()
    info = await store.create_session("acme", SessionCreated(spec=scripted([{"text": "hi"}])))
    await store.append_input(info.session_id, [UserMessage(text="hello?")])
    done = await wait_for_status(store, info.session_id, {"completed", "failed"}, timeout_s=10)
    assert done.status == "completed", done


async def test_bad_messages_are_dropped_and_the_brain_keeps_serving(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain()
    await js.publish("keel.work.garbage", b"{not json")
    await request_attention(js, "ses_nobody_has_this_one", "a session that does not exist")
    await js.publish("keel.outcomes.ses_x", b"\\x00\\x01 not an outcome")
    session_id = await start_session(store, js, scripted([{"text": "still here"}]))
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    # Nothing is left for a brain to retry forever: the bad work was dropped, not requeued
    # (the session's own last message is acked once its run has let go, a moment after its
    # status is written).
    deadline = time.monotonic() + 10
    while True:
        consumer = await js.consumer_info("KEEL_WORK", "brains")
        if consumer.num_pending == 0 and consumer.num_ack_pending == 0:
            break
        assert time.monotonic() < deadline, consumer
        await asyncio.sleep(0.05)


async def test_a_cancelled_session_stops_its_call_in_flight_and_records_its_outcome(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain()
    spec = scripted([{"tool_calls": [bash("sleep 60")]}, {"text": "never said"}])
    session_id = await start_session(store, js, spec)
    await wait_for(store, session_id, ToolDispatched)
    started = time.monotonic()
    await store.append_input(session_id, [SessionStatus(status="cancelled", reason="by me")])
    await request_attention(js, session_id, "cancel")
    deadline = time.monotonic() + 20
    while not await events_of(store, session_id, ToolResult):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert time.monotonic() - started < 15  # stopped, not run for its minute
    await wait_for_status(store, session_id, {"cancelled"})
    await wait_released(store, session_id)
    results = await events_of(store, session_id, ToolResult)
    assert all(r.is_error for r in results)
    assert (
        await events_of(store, session_id, ModelResponse)
        == (await events_of(store, session_id, ModelResponse))[:1]
    )  # no model call after the cancel
    await check_invariants(store, session_id)


async def test_input_while_the_model_thinks_keeps_the_response_and_its_call_runs_once(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain()
    spec = scripted(
        [
            {"tool_calls": [bash("echo ran >> runs.txt && wc -l < runs.txt")], "latency_ms": 400},
            {"text": "ran it; and noted"},
        ]
    )
    session_id = await start_session(store, js, spec)
    await wait_for_status(store, session_id, {"running"})
    await asyncio.sleep(0.1)  # the model is thinking
    await store.append_input(session_id, [UserMessage(text="also: note it down")])
    await request_attention(js, session_id, "user.message")
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    log = await check_invariants(store, session_id)
    responses = [r for r in log if isinstance(r.event, ModelResponse)]
    # The first response was kept (not thrown away and asked again) and says what it saw;
    # its call ran once; the second answers the note, which came after what the first saw.
    assert len(responses) == 2
    note = next(r for r in log if r.event == UserMessage(text="also: note it down"))
    assert responses[0].event.context_seq < note.seq < responses[0].seq
    [result] = await events_of(store, session_id, ToolResult)
    assert result.output.split("\n")[0] == "1"  # it ran once
    assert responses[1].event.context_seq >= note.seq
