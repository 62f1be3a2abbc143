from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brain import (
    FoldError,
    decode_state,
    encode_state,
    encode_state_parts,
    fold,
    initial_state,
    replay,
)
from schemas import (
    AgentSpec,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    BudgetReached,
    ContextCompacted,
    Event,
    JudgeVerdict,
    LoopDetected,
    ModelResponse,
    OutcomeDefined,
    OutcomeEvaluated,
    OutcomeEvaluationOngoing,
    OutcomeEvaluationStarted,
    OutcomeResult,
    Recorded,
    SessionCreated,
    SessionForked,
    SessionStatus,
    TextBlock,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    ToolResultBlock,
    ToolUseBlock,
    UnknownEvent,
    Usage,
    UserInterrupt,
    UserMessage,
    event_type,
)

SID = "ses_test"


def record(events: list[Event | UnknownEvent], start: int = 1) -> list[Recorded]:
    return [
        Recorded(
            seq=seq,
            at=1_000.0 + seq,
            type=e.type if isinstance(e, UnknownEvent) else event_type(e),
            event=e,
        )
        for seq, e in enumerate(events, start)
    ]


def run(events: list[Event | UnknownEvent]):  # type: ignore[no-untyped-def]
    return replay(record(events), initial_state(SID))


# -- random valid logs -------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8)
tool_inputs = st.dictionaries(
    st.text(min_size=1, max_size=6), json_scalars | st.lists(json_scalars, max_size=3), max_size=3
)
KINDS = [
    "user",
    "interrupt",
    "model",
    "request",
    "approval",
    "grant",
    "deny",
    "expire",
    "dispatch",
    "result",
    "verdict",
    "outcome",
    "evaluation",
    "evaluated",
    "budget",
    "loop",
    "compact",
    "status",
    "unknown",
]
steps = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 10_000), st.text(max_size=12), tool_inputs),
    max_size=80,
)


RESULTS: list[OutcomeResult] = [
    "satisfied",
    "needs_revision",
    "max_iterations_reached",
    "failed",
    "interrupted",
]


def build_log(plan: list[tuple[str, int, str, dict[str, object]]]) -> list[Event | UnknownEvent]:
    """Turn random steps into a log whose references (call ids, seqs) point at real things."""
    events: list[Event | UnknownEvent] = [SessionCreated(spec=AgentSpec(), title="prop")]
    calls: list[str] = []
    outcome = "outc_none"
    for kind, n, text, arguments in plan:
        call = calls[n % len(calls)] if calls else None
        match kind:
            case "outcome":
                outcome = f"outc_{len(events)}"
                events.append(
                    OutcomeDefined(
                        outcome_id=outcome,
                        description=text,
                        rubric=f"`{text}`",
                        max_iterations=n % 4 + 1,
                    )
                )
            case "evaluation":
                started = OutcomeEvaluationStarted(outcome_id=outcome, iteration=n % 3)
                ongoing = OutcomeEvaluationOngoing(outcome_id=outcome, iteration=n % 3)
                events.append(started if n % 2 else ongoing)
            case "evaluated":
                events.append(
                    OutcomeEvaluated(
                        outcome_id=outcome,
                        iteration=n % 3,
                        result=RESULTS[n % len(RESULTS)],
                        explanation=text,
                        usage=Usage(input_tokens=n, output_tokens=n // 7),
                        cost_usd=n / 1e7,
                    )
                )
            case "user":
                events.append(UserMessage(text=text))
            case "interrupt":
                events.append(UserInterrupt(reason=text))
            case "model":
                new_call = f"c{len(events)}"
                events.append(
                    ModelResponse(
                        content=[
                            TextBlock(text=text),
                            ToolUseBlock(call_id=new_call, name="bash", input=arguments),
                        ],
                        stop_reason="tool_use",
                        usage=Usage(input_tokens=n, output_tokens=n // 3),
                        cost_usd=n / 1e6,
                    )
                )
            case "request":
                calls.append(f"c{len(events)}")
                events.append(
                    ToolRequested(
                        call_id=calls[-1],
                        name=f"tool{n % 3}",
                        input=arguments,
                        idempotent=n % 2 == 0,
                    )
                )
            case "approval" if call:
                events.append(ApprovalRequested(call_id=call, expires_at=2_000.0 + n))
            case "grant" if call:
                events.append(ApprovalGranted(call_id=call, by=text))
            case "deny" if call:
                events.append(ApprovalDenied(call_id=call, reason=text))
            case "expire" if call:
                events.append(ApprovalExpired(call_id=call))
            case "dispatch" if call:
                events.append(ToolDispatched(call_id=call, attempt=n % 3 + 1, sandbox_id=text))
            case "result" if call:
                events.append(
                    ToolResult(
                        call_id=call,
                        output=text,
                        is_error=n % 2 == 1,
                        checkpoint=f"ck{n % 4}",
                        sandbox_lost=n % 5 == 0,
                    )
                )
            case "verdict":
                events.append(JudgeVerdict(passed=n % 2 == 0, judge="command", detail=text))
            case "budget":
                events.append(BudgetReached(budget="turns", limit=10, used=10))
            case "loop":
                events.append(LoopDetected(signature=text, repeats=n % 9, reason=text))
            case "compact":
                events.append(ContextCompacted(up_to_seq=n % (len(events) + 1), summary=text))
            case "status":
                status = ["idle", "running", "waiting", "paused", "completed"][n % 5]
                events.append(SessionStatus(status=status, reason=text))  # type: ignore[arg-type]
            case "unknown":
                events.append(UnknownEvent(type="future.thing", data=f'{{"n": {n}}}'))
    return events


@settings(max_examples=300, deadline=None)
@given(steps)
def test_snapshot_plus_tail_equals_full_replay(
    plan: list[tuple[str, int, str, dict[str, object]]],
) -> None:
    log = record(build_log(plan))
    full = replay(log, initial_state(SID))
    for cut in range(len(log) + 1):
        snapshot = encode_state(replay(log[:cut], initial_state(SID)))
        resumed = replay(log[cut:], decode_state(snapshot))
        assert resumed == full


@settings(max_examples=200, deadline=None)
@given(steps)
def test_state_encoding_is_lossless_and_fold_is_deterministic(
    plan: list[tuple[str, int, str, dict[str, object]]],
) -> None:
    log = record(build_log(plan))
    state = replay(log, initial_state(SID))
    assert decode_state(encode_state(state)) == state
    assert encode_state(decode_state(encode_state(state))) == encode_state(state)
    header, messages = encode_state_parts(state)
    assert decode_state(header, messages) == state
    assert replay(log, initial_state(SID)) == state
    assert state.seq == len(log)


# -- the meaning of each event -------------------------------------------------------------


def test_a_tool_call_from_request_to_result() -> None:
    state = run(
        [
            SessionCreated(spec=AgentSpec(tools=["bash"])),
            UserMessage(text="run the tests"),
            ModelResponse(
                content=[ToolUseBlock(call_id="c1", name="bash", input={"command": "pytest"})],
                stop_reason="tool_use",
                usage=Usage(input_tokens=100, output_tokens=10),
                cost_usd=0.01,
            ),
            ToolRequested(call_id="c1", name="bash", input={"command": "pytest"}),
            ApprovalRequested(call_id="c1", expires_at=5_000.0),
        ]
    )
    call = state.open_calls["c1"]
    assert (call.phase, call.approval_expires_at, call.requested_seq) == (
        "awaiting_approval",
        5_000.0,
        4,
    )
    assert not state.pending_input and state.turns == 1 and state.cost_usd == 0.01
    assert state.usage.total_tokens == 110

    more = record(
        [
            ApprovalGranted(call_id="c1", by="alice"),
            ToolDispatched(call_id="c1", attempt=1, sandbox_id="sbx"),
            ToolResult(call_id="c1", output="3 passed", checkpoint="ck1"),
            ToolResult(call_id="c1", output="a duplicate changes nothing", checkpoint="ck2"),
        ],
        start=6,
    )
    state = replay(more[:2], state)
    assert (state.open_calls["c1"].phase, state.open_calls["c1"].sandbox_id) == (
        "dispatched",
        "sbx",
    )
    state = replay(more[2:], state)
    assert state.open_calls == {} and state.calls_finished == 1 and state.checkpoint == "ck1"
    assert [m.role for m in state.messages] == ["user", "assistant", "user"]
    assert state.messages[-1].content == [ToolResultBlock(call_id="c1", output="3 passed")]
    assert state.sandbox_id == "sbx"


def test_a_lost_sandbox_is_forgotten_and_its_last_checkpoint_kept() -> None:
    state = run(
        [
            SessionCreated(spec=AgentSpec()),
            UserMessage(text="go"),
            ModelResponse(
                content=[
                    ToolUseBlock(call_id="c1", name="bash", input={"command": "make"}),
                    ToolUseBlock(call_id="c2", name="bash", input={"command": "true"}),
                ],
                stop_reason="tool_use",
            ),
            ToolRequested(call_id="c1", name="bash", input={"command": "make"}),
            ToolRequested(call_id="c2", name="bash", input={"command": "true"}),
            ToolDispatched(call_id="c1", sandbox_id="sbx_old"),
            ToolDispatched(call_id="c2", sandbox_id="sbx_old"),
            ToolResult(call_id="c2", output="", checkpoint="ck1"),
            ToolResult(call_id="c1", outcome="unknown", is_error=True, sandbox_lost=True),
        ]
    )
    assert state.sandbox_id is None and state.checkpoint == "ck1"


def test_a_fork_gets_its_own_sandbox_and_runs_the_parents_calls_in_flight_anew() -> None:
    state = run(
        [
            SessionCreated(spec=AgentSpec()),
            UserMessage(text="go"),
            ModelResponse(
                content=[ToolUseBlock(call_id="c1", name="bash", input={"command": "make"})],
                stop_reason="tool_use",
            ),
            ToolRequested(call_id="c1", name="bash", input={"command": "make"}),
            ToolDispatched(call_id="c1", sandbox_id="sbx_parent"),
            SessionForked(parent_session_id="ses_parent", at_seq=5),
        ]
    )
    assert state.sandbox_id is None and state.forked_from == "ses_parent"
    assert state.open_calls["c1"].phase == "requested"


def test_roles_alternate_so_a_provider_accepts_the_conversation() -> None:
    state = run(
        [
            SessionCreated(spec=AgentSpec()),
            UserMessage(text="a"),
            UserMessage(text="b"),
            ModelResponse(content=[TextBlock(text="c")], stop_reason="end_turn"),
            UserMessage(text="d"),
        ]
    )
    assert [m.role for m in state.messages] == ["user", "assistant", "user"]
    assert state.messages[0].content == [TextBlock(text="a"), TextBlock(text="b")]
    assert state.pending_input


def test_compaction_replaces_the_old_conversation_with_its_summary() -> None:
    state = run(
        [
            SessionCreated(spec=AgentSpec()),
            UserMessage(text="old"),
            ModelResponse(content=[TextBlock(text="old answer")], stop_reason="end_turn"),
            UserMessage(text="new"),
            ContextCompacted(up_to_seq=3, summary="we talked"),
        ]
    )
    assert state.summary == "we talked" and state.compacted_through == 3
    assert [m.seq for m in state.messages] == [4]


def test_guards_pause_and_resuming_clears_them() -> None:
    events: list[Event | UnknownEvent] = [
        SessionCreated(spec=AgentSpec()),
        BudgetReached(budget="tokens", limit=10, used=12),
        LoopDetected(signature="bash:x", repeats=5, reason="same call"),
        UserInterrupt(),
        SessionStatus(status="paused", reason="budget"),
    ]
    state = run(events)
    assert (state.budget_reached, state.loop_detected, state.interrupted) == (
        "tokens",
        "same call",
        True,
    )
    assert (state.status, state.status_reason) == ("paused", "budget")
    resumed = run([*events, SessionStatus(status="running")])
    assert (resumed.budget_reached, resumed.loop_detected, resumed.interrupted) == (
        None,
        None,
        False,
    )


def test_verdict_fork_and_unknown_events() -> None:
    state = run(
        [
            SessionCreated(spec=AgentSpec()),
            SessionForked(parent_session_id="ses_parent", at_seq=7),
            UnknownEvent(type="future.thing", data="{}"),
            JudgeVerdict(passed=False, judge="model", detail="tests still fail"),
        ]
    )
    assert (state.forked_from, state.forked_at_seq, state.unknown_events) == ("ses_parent", 7, 1)
    assert state.verdict is not None and not state.verdict.passed and state.verdict.seq == 4


def test_repeated_calls_leave_the_same_signature() -> None:
    same = {"command": "ls", "cwd": "/w"}
    reordered = {"cwd": "/w", "command": "ls"}
    state = run(
        [
            SessionCreated(spec=AgentSpec()),
            ToolRequested(call_id="a", name="bash", input=same),
            ToolRequested(call_id="b", name="bash", input=reordered),
            ToolRequested(call_id="c", name="bash", input={"command": "pwd"}),
        ]
    )
    first, second, third = state.recent_calls
    assert first == second != third


def test_a_gap_or_repeat_in_seq_is_refused() -> None:
    created = record([SessionCreated(spec=AgentSpec())])[0]
    state = fold(initial_state(SID), created)
    with pytest.raises(FoldError):
        fold(state, created)
    with pytest.raises(FoldError):
        fold(state, record([UserMessage(text="x")], start=3)[0])


def test_input_the_model_did_not_see_comes_after_its_response_and_is_still_pending() -> None:
    state = run(
        [
            SessionCreated(spec=AgentSpec()),
            UserMessage(text="first"),
            SessionStatus(status="running"),
            UserMessage(text="second"),  # sent while the model was thinking
            ModelResponse(content=[TextBlock(text="a1")], stop_reason="end_turn", context_seq=3),
        ]
    )
    assert [(m.role, [b.text for b in m.content]) for m in state.messages] == [  # type: ignore[union-attr]
        ("user", ["first"]),
        ("assistant", ["a1"]),
        ("user", ["second"]),
    ]
    # The moved turn opens at the response, so messages stay in seq order; its block keeps
    # the seq it was recorded at.
    assert state.pending_input and state.messages[-1].seq == 5
    assert state.messages[-1].block_seqs == [4]
    answered = run(
        [
            SessionCreated(spec=AgentSpec()),
            UserMessage(text="first"),
            UserMessage(text="second"),
            ModelResponse(content=[TextBlock(text="a1")], stop_reason="end_turn", context_seq=3),
        ]
    )
    assert not answered.pending_input and len(answered.messages) == 2
    # A log from before `context_seq` existed: the response answered all before it.
    legacy = run(
        [
            SessionCreated(spec=AgentSpec()),
            UserMessage(text="first"),
            UserMessage(text="second"),
            ModelResponse(content=[TextBlock(text="a1")], stop_reason="end_turn"),
        ]
    )
    assert not legacy.pending_input and len(legacy.messages) == 2


def test_a_defined_outcome_is_given_as_a_message_and_its_grader_feedback_as_the_next() -> None:
    answer = ModelResponse(content=[TextBlock(text="a haiku")], stop_reason="end_turn")
    spent = Usage(input_tokens=50, output_tokens=5)
    state = run(
        [
            SessionCreated(spec=AgentSpec()),
            OutcomeDefined(outcome_id="outc_1", description="Write a haiku.", rubric="has `moon`"),
            answer,
            OutcomeEvaluationStarted(outcome_id="outc_1", iteration=0),
            OutcomeEvaluationOngoing(outcome_id="outc_1", iteration=0),
            OutcomeEvaluated(
                outcome_id="outc_1",
                iteration=0,
                result="needs_revision",
                explanation="the last message lacks `moon`",
                usage=spent,
                cost_usd=0.5,
            ),
        ]
    )
    assert [(m.role, m.content[0].text) for m in state.messages] == [  # type: ignore[union-attr]
        ("user", "Write a haiku."),
        ("assistant", "a haiku"),
        ("user", "The grader found that your work needs revision: the last message lacks `moon`"),
    ]
    outcome = state.outcome
    assert outcome is not None and outcome.open and not outcome.evaluating
    assert (outcome.rubric, outcome.iteration, outcome.result) == (
        "has `moon`",
        1,
        "needs_revision",
    )
    assert (outcome.defined_seq, outcome.started_seq, outcome.ended_seq) == (2, 4, 6)
    # The grader's spend is the session's, as the worker's is; it takes no turn.
    assert (state.usage, state.cost_usd, state.turns, state.input_seq) == (spent, 0.5, 1, 2)


def test_an_evaluation_of_another_outcome_changes_only_the_spend() -> None:
    state = run(
        [
            SessionCreated(spec=AgentSpec()),
            OutcomeDefined(outcome_id="outc_2", description="d", rubric="r", max_iterations=1),
            OutcomeEvaluationStarted(outcome_id="outc_1", iteration=0),
            OutcomeEvaluated(outcome_id="outc_1", iteration=0, result="satisfied", cost_usd=0.1),
        ]
    )
    assert state.outcome is not None and state.outcome.outcome_id == "outc_2"
    assert (state.outcome.started_seq, state.outcome.result, state.cost_usd) == (0, None, 0.1)


@pytest.mark.parametrize(
    ("result", "told"),
    [
        ("satisfied", None),
        ("failed", None),
        ("interrupted", None),
        ("max_iterations_reached", "no more evaluations will run: short"),
    ],
)
def test_only_an_evaluation_that_sends_the_worker_back_is_shown_to_it(
    result: OutcomeResult, told: str | None
) -> None:
    state = run(
        [
            SessionCreated(spec=AgentSpec()),
            OutcomeDefined(outcome_id="outc_1", description="d", rubric="r"),
            ModelResponse(content=[TextBlock(text="w")], stop_reason="end_turn"),
            OutcomeEvaluated(outcome_id="outc_1", iteration=2, result=result, explanation="short"),
        ]
    )
    assert state.outcome is not None and not state.outcome.open
    last = state.messages[-1]
    if told is None:
        assert last.role == "assistant"
    else:
        assert last.role == "user" and last.content[0].text.endswith(told)  # type: ignore[union-attr]
