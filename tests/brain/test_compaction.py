"""Compaction the brain triggers: the window it keeps under, the older outputs the fold
reduces, when decide compacts and what a handoff holds, and contexts a replay rebuilds."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from brain import initial_state, replay
from brain.compaction import (
    DEFAULT_WINDOW,
    HANDOFF_LINES,
    HANDOFF_TITLE,
    LINE_CHARS,
    TASK_CHARS,
    compact_limit,
    handoff_compaction,
    window_tokens,
)
from brain.decide import CallModel, Compact, decide
from schemas import (
    AgentSpec,
    BlobRef,
    Budgets,
    ContextCompacted,
    ContextPolicy,
    Event,
    ModelResponse,
    ModelSpec,
    Recorded,
    SessionCreated,
    ToolRequested,
    ToolResult,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
    UserMessage,
    event_type,
)
from session_store import EventStore
from tests.brain.contexts import RecordingProviders, assert_contexts_replay
from tests.brain.harness import Harness
from tests.brain.invariants import check_invariants
from tests.brain.long_session import LongSession, long_spec
from tests.brain.scenario import RUN_TEST, coding_script, compacting_spec

SID = "ses_compaction"


def record(events: list[Event]) -> list[Recorded]:
    return [
        Recorded(seq=seq, at=1_000.0 + seq, type=event_type(e), event=e)
        for seq, e in enumerate(events, 1)
    ]


def spec(**policy: Any) -> AgentSpec:
    return AgentSpec(tools=["bash"], context=ContextPolicy(**policy))


def turns(count: int, output: str, blob_every: int = 0) -> list[Event]:
    """`count` tool turns, each a response asking for bash and its result."""
    events: list[Event] = []
    for turn in range(count):
        call_id = f"c{turn}"
        blob = (
            BlobRef(digest=f"{turn:064x}", size=100_000, preview=output)
            if blob_every and turn % blob_every == 0
            else None
        )
        events += [
            ModelResponse(
                content=[ToolUseBlock(call_id=call_id, name="bash", input={"n": turn})],
                stop_reason="tool_use",
            ),
            ToolRequested(call_id=call_id, name="bash", input={"n": turn}),
            ToolResult(call_id=call_id, output=output, blob=blob),
        ]
    return events


def results(state: Any) -> list[ToolResultBlock]:
    return [
        block
        for message in state.messages
        for block in message.content
        if isinstance(block, ToolResultBlock)
    ]


# -- the window -----------------------------------------------------------------------------


def test_the_window_is_the_agents_own_else_the_known_models_else_a_safe_default() -> None:
    claude = AgentSpec(model=ModelSpec(provider="anthropic", name="claude-sonnet-4-5"))
    assert window_tokens(claude) == 200_000
    assert window_tokens(AgentSpec(model=ModelSpec(name="gpt-4o-mini"))) == 128_000
    assert window_tokens(AgentSpec(model=ModelSpec(name="gpt-4.1-mini"))) == 1_000_000
    assert window_tokens(AgentSpec(model=ModelSpec(name="a-local-model"))) == DEFAULT_WINDOW
    own = AgentSpec(model=claude.model, context=ContextPolicy(window_tokens=32_000))
    assert window_tokens(own) == 32_000
    assert compact_limit(own) == 25_600


# -- older tool outputs ---------------------------------------------------------------------


def test_outputs_older_than_the_kept_turns_become_previews_naming_where_the_rest_is() -> None:
    output = "line of output\n" * 400  # 6,000 chars
    events = [SessionCreated(spec=spec(keep_turns=2)), UserMessage(text="go"), *turns(5, output, 4)]
    state = replay(record(events), initial_state(SID))
    shown = results(state)
    assert [len(b.output) > len(output) // 2 for b in shown] == [False, False, False, True, True]
    # The call's own result seq (3 events a turn, after the two first).
    assert shown[1].output.startswith(output[:500])
    assert shown[1].output.endswith("the full output is tool.result seq 8]")
    # A blob's preview keeps the blob: the context names it, not a seq.
    assert shown[0].blob is not None and "tool.result seq" not in shown[0].output
    # Short outputs are kept whole, whatever their age.
    short = [SessionCreated(spec=spec(keep_turns=1)), UserMessage(text="go"), *turns(3, "ok")]
    assert [b.output for b in results(replay(record(short), initial_state(SID)))] == ["ok"] * 3


def test_the_context_size_comes_from_the_last_reported_input_and_what_came_after() -> None:
    events: list[Event] = [SessionCreated(spec=spec()), UserMessage(text="go")]
    state = replay(record(events), initial_state(SID))
    assert state.context_tokens == 1  # "go"
    response = ModelResponse(
        content=[ToolUseBlock(call_id="c", name="bash", input={})],
        stop_reason="tool_use",
        usage=Usage(input_tokens=5_000, cache_read_tokens=1_000, output_tokens=30),
    )
    state = replay(
        record(
            [
                *events,
                response,
                ToolRequested(call_id="c", name="bash"),
                ToolResult(call_id="c", output="x" * 400),
            ]
        ),
        initial_state(SID),
    )
    assert state.context_tokens == 6_000 + 30 + 100 + 16


# -- when to compact ------------------------------------------------------------------------


def test_decide_compacts_a_context_past_its_share_of_the_window_keeping_the_last_turns() -> None:
    output = "y" * 8_000  # 2,000 tokens; previews after two turns
    events: list[Event] = [
        SessionCreated(spec=spec(window_tokens=8_000, compact_at=0.5, keep_turns=2)),
        UserMessage(text="go"),
        *turns(2, output),
    ]
    state = replay(record(events), initial_state(SID))
    assert state.context_tokens > compact_limit(state.spec)  # type: ignore[arg-type]
    # All before the two turns kept goes: here, the user's first message.
    action = decide(state, 2_000.0)
    assert action == Compact(up_to_seq=2, strategy="handoff", tokens_before=state.context_tokens)
    compacted = [*events, handoff_compaction(state, 2)]
    state = replay(record(compacted)[len(events) :], state)
    # The two turns kept are still past the limit: only the last one is kept.
    assert state.context_tokens > compact_limit(state.spec)  # type: ignore[arg-type]
    action = decide(state, 2_000.0)
    assert action == Compact(up_to_seq=5, strategy="handoff", tokens_before=state.context_tokens)
    state = replay(record([*compacted, handoff_compaction(state, 5)])[len(compacted) :], state)
    assert decide(state, 2_000.0) == CallModel()


def test_a_last_turn_past_the_limit_alone_is_sent_as_it_is() -> None:
    events: list[Event] = [
        SessionCreated(spec=spec(window_tokens=8_000, compact_at=0.5, keep_turns=2)),
        UserMessage(text="go"),
        *turns(1, "z" * 20_000),
    ]
    state = replay(record(events), initial_state(SID))
    action = decide(state, 2_000.0)
    assert action == Compact(up_to_seq=2, strategy="handoff", tokens_before=state.context_tokens)
    state = replay(record([*events, handoff_compaction(state, 2)])[len(events) :], state)
    assert state.context_tokens > compact_limit(state.spec)  # type: ignore[arg-type]
    assert decide(state, 2_000.0) == CallModel()


def test_a_handoff_keeps_the_task_and_a_bounded_record_of_what_was_done() -> None:
    session = LongSession(SID, long_spec())
    for _ in itertools.islice(session.events(), 60_000):
        pass
    state = session.state
    assert session.compactions.count >= 20
    assert state.summary.startswith(HANDOFF_TITLE)
    assert "Task: Make the test suite pass" in state.summary
    bound = 300 + TASK_CHARS + HANDOFF_LINES * (LINE_CHARS + 60)
    assert max(session.compactions.summary_chars) <= bound
    # Every request went under the window's share; each compaction left room.
    assert max(session.requests) <= compact_limit(long_spec())
    assert max(session.compactions.tokens_after) < compact_limit(long_spec()) // 2


def test_a_summary_compaction_is_the_sessions_spend() -> None:
    events: list[Event] = [
        SessionCreated(spec=AgentSpec(budgets=Budgets(max_tokens=100))),
        UserMessage(text="go"),
        ContextCompacted(
            up_to_seq=2,
            summary="the user said go",
            strategy="summary",
            usage=Usage(input_tokens=90, output_tokens=20),
            cost_usd=0.5,
        ),
    ]
    state = replay(record(events), initial_state(SID))
    assert (state.usage.total_tokens, state.cost_usd) == (110, 0.5)
    assert state.messages == [] and state.summary == "the user said go"
    assert state.context_tokens == 4  # the summary's 16 chars; the spec has no prompt


# -- a whole session, live and replayed -----------------------------------------------------


async def test_contexts_sent_by_a_compacting_brain_equal_those_a_replay_builds(
    store: EventStore,
) -> None:
    for strategy in ("summary", "handoff"):
        harness = Harness(store, snapshot_every=7)
        providers = RecordingProviders()
        harness.providers = providers
        harness.hands.answer("bash", {"command": RUN_TEST}, "failed\n" * 500)
        spec = compacting_spec(coding_script())
        spec = msgspec.structs.replace(
            spec, context=msgspec.structs.replace(spec.context, strategy=strategy)
        )
        session_id = await harness.start_session(spec)
        result = await harness.drive(session_id)
        assert result.status == "completed", result
        log = await check_invariants(store, session_id)
        compactions = [r.event for r in log if isinstance(r.event, ContextCompacted)]
        assert len(compactions) >= 2 and {c.strategy for c in compactions} == {strategy}
        assert assert_contexts_replay(log, providers.requests) == len(providers.requests)
