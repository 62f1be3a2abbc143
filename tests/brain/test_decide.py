"""decide() without any I/O: states are built by folding events, as a brain would."""

from __future__ import annotations

import msgspec

from brain import initial_state, replay
from brain.decide import (
    AskApproval,
    CallModel,
    Complete,
    DetectLoop,
    Dispatch,
    ExpireApproval,
    GradeOutcome,
    InterruptOutcome,
    Judge,
    Pause,
    ReachBudget,
    Refuse,
    RequestTools,
    Wait,
    decide,
)
from brain.state import SessionState
from schemas import (
    AgentSpec,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    Budgets,
    CompletionCondition,
    CustomTool,
    Event,
    JudgeVerdict,
    ModelResponse,
    OutcomeDefined,
    OutcomeEvaluated,
    OutcomeEvaluationStarted,
    OutcomeResult,
    Recorded,
    SandboxSpec,
    SessionCreated,
    SessionStatus,
    TextBlock,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    ToolUseBlock,
    Usage,
    UserInterrupt,
    UserMessage,
    event_type,
)

NOW = 2_000.0


def state_of(*events: Event, spec: AgentSpec | None = None) -> SessionState:
    log = [SessionCreated(spec=spec or AgentSpec()), *events]
    recorded = [
        Recorded(seq=seq, at=1_000.0 + seq, type=event_type(e), event=e)
        for seq, e in enumerate(log, 1)
    ]
    return replay(recorded, initial_state("ses_d"))


def uses(*names: str) -> ModelResponse:
    return ModelResponse(
        content=[
            ToolUseBlock(call_id=f"c{i}", name=n, input={"i": i}) for i, n in enumerate(names)
        ],
        stop_reason="tool_use",
    )


def requested(*names: str) -> list[Event]:
    return [ToolRequested(call_id=f"c{i}", name=n, input={"i": i}) for i, n in enumerate(names)]


END = ModelResponse(content=[TextBlock(text="done")], stop_reason="end_turn")


def test_a_new_session_waits_for_input_then_calls_the_model() -> None:
    assert decide(state_of(), NOW) == Wait(reason="waiting for user input")
    assert decide(state_of(UserMessage(text="fix it")), NOW) == CallModel()


def test_tool_uses_are_requested_then_dispatched_together() -> None:
    state = state_of(UserMessage(text="go"), uses("read_file", "grep"))
    action = decide(state, NOW)
    assert isinstance(action, RequestTools) and [c.call_id for c in action.calls] == ["c0", "c1"]
    state = state_of(
        UserMessage(text="go"), uses("read_file", "grep"), *requested("read_file", "grep")
    )
    assert decide(state, NOW) == Dispatch(call_ids=["c0", "c1"])


def test_in_flight_calls_wait_and_results_go_back_to_the_model() -> None:
    events: list[Event] = [UserMessage(text="go"), uses("bash"), *requested("bash")]
    events.append(ToolDispatched(call_id="c0", sandbox_id="sbx"))
    assert decide(state_of(*events), NOW) == Wait(reason="waiting for tool outcomes")
    events.append(ToolResult(call_id="c0", output="ok"))
    assert decide(state_of(*events), NOW) == CallModel()


def test_permissions_deny_and_ask_with_expiring_approvals() -> None:
    spec = AgentSpec(permissions={"bash": "ask", "write_file": "deny"}, approval_timeout_s=60)
    base: list[Event] = [
        UserMessage(text="go"),
        uses("bash", "write_file"),
        *requested("bash", "write_file"),
    ]
    assert decide(state_of(*base, spec=spec), NOW) == AskApproval(call_id="c0", expires_at=NOW + 60)
    asked = [*base, ApprovalRequested(call_id="c0", expires_at=NOW + 60)]
    assert decide(state_of(*asked, spec=spec), NOW) == Refuse(
        call_id="c1", reason="the policy denies write_file"
    )
    both = [*asked, ToolResult(call_id="c1", is_error=True, outcome="error")]
    assert decide(state_of(*both, spec=spec), NOW) == Wait(reason="waiting for an approval")
    assert decide(state_of(*both, spec=spec), NOW + 60) == ExpireApproval(call_id="c0")
    granted = [*both, ApprovalGranted(call_id="c0", by="alice")]
    assert decide(state_of(*granted, spec=spec), NOW) == Dispatch(call_ids=["c0"])
    denied = [*both, ApprovalDenied(call_id="c0", by="bob")]
    assert decide(state_of(*denied, spec=spec), NOW) == Refuse(
        call_id="c0", reason="the approval was denied"
    )


def test_budgets_pause_the_session() -> None:
    spec = AgentSpec(budgets=Budgets(max_tokens=100, max_wall_seconds=500))
    spent = ModelResponse(
        content=[TextBlock(text="x")], stop_reason="end_turn", usage=Usage(input_tokens=150)
    )
    again = UserMessage(text="go on")
    assert decide(state_of(UserMessage(text="go"), spent, again, spec=spec), NOW) == ReachBudget(
        budget="tokens", limit=100, used=150
    )
    # The model ended its turn within the call that crossed the line: done, not paused.
    assert isinstance(decide(state_of(UserMessage(text="go"), spent, spec=spec), NOW), Complete)
    late = state_of(UserMessage(text="go"), spec=spec)
    assert decide(late, 1_001.0 + 500) == ReachBudget(budget="wall_clock", limit=500, used=500)


def test_calls_already_asked_for_run_before_a_budget_pauses() -> None:
    spec = AgentSpec(budgets=Budgets(max_turns=1))
    asked = ModelResponse(
        content=[ToolUseBlock(call_id="c0", name="bash", input={"command": "ls"})],
        stop_reason="tool_use",
    )
    requested = ToolRequested(call_id="c0", name="bash", input={"command": "ls"})
    state = state_of(UserMessage(text="go"), asked, requested, spec=spec)
    assert decide(state, NOW) == Dispatch(call_ids=["c0"])
    answered = state_of(
        UserMessage(text="go"), asked, requested, ToolResult(call_id="c0"), spec=spec
    )
    assert decide(answered, NOW) == ReachBudget(budget="turns", limit=1, used=1)


def test_a_cancelled_session_still_gives_every_call_its_outcome() -> None:
    asked = ModelResponse(
        content=[
            ToolUseBlock(call_id="c0", name="bash", input={"command": "sleep 60"}),
            ToolUseBlock(call_id="c1", name="bash", input={"command": "ls"}),
        ],
        stop_reason="tool_use",
    )
    events: list[Event] = [
        UserMessage(text="go"),
        asked,
        ToolRequested(call_id="c0", name="bash", input={"command": "sleep 60"}),
        ToolRequested(call_id="c1", name="bash", input={"command": "ls"}),
        ToolDispatched(call_id="c0", sandbox_id="sbx"),
        SessionStatus(status="cancelled", reason="by the user"),
    ]
    assert decide(state_of(*events), NOW) == Refuse(
        call_id="c1", reason="the session was cancelled"
    )
    refused = [*events, ToolResult(call_id="c1", is_error=True)]
    assert decide(state_of(*refused), NOW) == Wait(reason="waiting for cancelled calls to end")
    ended = [*refused, ToolResult(call_id="c0", is_error=True)]
    assert decide(state_of(*ended), NOW) == Wait(reason="the session is cancelled")


def test_the_same_call_over_and_over_is_a_loop() -> None:
    events: list[Event] = [UserMessage(text="go")]
    for i in range(5):
        events += [
            ModelResponse(
                content=[ToolUseBlock(call_id=f"c{i}", name="bash", input={"command": "ls"})],
                stop_reason="tool_use",
            ),
            ToolRequested(call_id=f"c{i}", name="bash", input={"command": "ls"}),
        ]
        if i < 4:
            events.append(ToolResult(call_id=f"c{i}", output="same"))
    action = decide(state_of(*events), NOW)
    assert isinstance(action, DetectLoop) and action.repeats == 5


def test_interrupts_pauses_and_terminal_states() -> None:
    assert decide(state_of(UserMessage(text="go"), UserInterrupt()), NOW) == Pause(
        reason="interrupted by the user"
    )
    paused = state_of(UserMessage(text="go"), SessionStatus(status="paused", reason="budget"))
    assert decide(paused, NOW) == Wait(reason="paused: budget")
    done = state_of(UserMessage(text="go"), SessionStatus(status="completed"))
    assert decide(done, NOW) == Wait(reason="the session is completed")


def test_completion_is_judged_by_something_other_than_the_worker() -> None:
    assert decide(state_of(UserMessage(text="go"), END), NOW) == Complete(
        reason="the model ended its turn"
    )
    spec = AgentSpec(completion=CompletionCondition(kind="command", command="pytest -q"))
    assert decide(state_of(UserMessage(text="go"), END, spec=spec), NOW) == Judge()
    failed = state_of(
        UserMessage(text="go"), END, JudgeVerdict(passed=False, judge="command"), spec=spec
    )
    assert decide(failed, NOW) == CallModel()
    passed = state_of(
        UserMessage(text="go"),
        END,
        JudgeVerdict(passed=True, judge="command", detail="exit 0"),
        spec=spec,
    )
    assert decide(passed, NOW) == Complete(reason="the command judge passed: exit 0")
    # A verdict older than the latest response does not count.
    stale = state_of(
        UserMessage(text="go"),
        END,
        JudgeVerdict(passed=True, judge="command"),
        UserMessage(text="one more thing"),
        END,
        spec=spec,
    )
    assert decide(stale, NOW) == Judge()


def test_a_call_answered_after_input_the_model_had_not_seen_is_not_asked_for_again() -> None:
    spec = AgentSpec(tools=["read_file"])
    response = ModelResponse(
        content=[ToolUseBlock(call_id="c0", name="read_file", input={"i": 0})],
        stop_reason="tool_use",
        context_seq=3,
    )
    state = state_of(
        UserMessage(text="go"),
        SessionStatus(status="running"),
        UserMessage(text="also this"),  # seq 4: sent while the model was thinking
        response,
        *requested("read_file"),
        ToolDispatched(call_id="c0", attempt=1, sandbox_id="sbx_1"),
        ToolResult(call_id="c0", output="text"),
        spec=spec,
    )
    # The result and the unseen input both go to the model next; nothing is requested twice.
    assert decide(state, NOW) == CallModel()
    assert [m.role for m in state.messages] == ["user", "assistant", "user"]


IDLING = AgentSpec(tools=["bash"], turn_end="idle")


def test_a_session_that_idles_between_turns_ends_a_turn_idle_and_takes_more_input() -> None:
    turn: list[Event] = [UserMessage(text="hi"), END]
    assert decide(state_of(*turn, spec=IDLING), NOW) == Complete(reason="the model ended its turn")
    idle = SessionStatus(status="idle", reason="end_turn")
    assert decide(state_of(*turn, idle, spec=IDLING), NOW) == Wait(reason="waiting for user input")
    assert decide(state_of(*turn, idle, UserMessage(text="more"), spec=IDLING), NOW) == CallModel()


def test_an_interrupt_refuses_calls_not_started_and_leaves_running_ones_to_finish() -> None:
    spec = AgentSpec(tools=["bash", "grep"], turn_end="idle")
    events: list[Event] = [UserMessage(text="go"), uses("bash", "grep"), *requested("bash", "grep")]
    events += [ToolDispatched(call_id="c0", sandbox_id="sbx"), UserInterrupt()]
    assert decide(state_of(*events, spec=spec), NOW) == Refuse(
        call_id="c1", reason="interrupted by the user"
    )
    events.append(ToolResult(call_id="c1", output="interrupted", is_error=True))
    assert decide(state_of(*events, spec=spec), NOW) == Pause(reason="interrupted by the user")
    events.append(SessionStatus(status="idle", reason="interrupted by the user"))
    # The running call's result arrives after the turn ended: the model is not called.
    events.append(ToolResult(call_id="c0", output="ok"))
    assert decide(state_of(*events, spec=spec), NOW) == Wait(reason="waiting for user input")


def test_an_idling_session_over_budget_is_stopped_again_by_each_new_turn() -> None:
    spec = AgentSpec(turn_end="idle", budgets=Budgets(max_turns=1))
    events: list[Event] = [
        UserMessage(text="a"),
        END,
        SessionStatus(status="idle", reason="end_turn"),
    ]
    events.append(UserMessage(text="b"))
    assert isinstance(decide(state_of(*events, spec=spec), NOW), ReachBudget)
    events.append(SessionStatus(status="idle", reason="the turns budget is reached"))
    assert decide(state_of(*events, spec=spec), NOW) == Wait(reason="waiting for user input")
    events.append(UserMessage(text="c"))
    assert isinstance(decide(state_of(*events, spec=spec), NOW), ReachBudget)


def test_calls_the_client_runs_are_never_dispatched() -> None:
    custom = AgentSpec(custom_tools=[CustomTool(name="lookup")], permissions={"lookup": "ask"})
    events: list[Event] = [UserMessage(text="go"), uses("lookup"), *requested("lookup")]
    assert isinstance(decide(state_of(*events, spec=custom), NOW), AskApproval)
    events += [ApprovalRequested(call_id="c0", expires_at=NOW + 60), ApprovalGranted(call_id="c0")]
    assert decide(state_of(*events, spec=custom), NOW) == Wait(
        reason="waiting for the client's tool results"
    )
    self_hosted = AgentSpec(tools=["bash"], sandbox=SandboxSpec(backend="self_hosted"))
    events = [UserMessage(text="go"), uses("bash"), *requested("bash")]
    assert decide(state_of(*events, spec=self_hosted), NOW) == Wait(
        reason="waiting for the client's tool results"
    )
    events.append(ToolResult(call_id="c0", output="ok", from_client=True))
    assert decide(state_of(*events, spec=self_hosted), NOW) == CallModel()


def defined(max_iterations: int = 3) -> OutcomeDefined:
    return OutcomeDefined(
        outcome_id="outc_1", description="a haiku", rubric="`moon`", max_iterations=max_iterations
    )


def evaluated(result: OutcomeResult, iteration: int = 0, cost: float = 0.0) -> OutcomeEvaluated:
    return OutcomeEvaluated(
        outcome_id="outc_1", iteration=iteration, result=result, explanation="why", cost_usd=cost
    )


def test_a_turn_that_ends_an_outcomes_work_is_graded_until_the_grader_ends_it() -> None:
    spec = AgentSpec(turn_end="idle")
    assert decide(state_of(defined(), spec=spec), NOW) == CallModel()
    worked = [defined(), END]
    assert decide(state_of(*worked, spec=spec), NOW) == GradeOutcome(
        outcome_id="outc_1", iteration=0
    )
    # A brain died while the grader was at it: the next asks again, without a second start.
    started = [*worked, OutcomeEvaluationStarted(outcome_id="outc_1", iteration=0)]
    assert decide(state_of(*started, spec=spec), NOW) == GradeOutcome(
        outcome_id="outc_1", iteration=0, resume=True
    )
    # Needs revision: the worker is sent back (the feedback is its next user turn), and its
    # next turn is evaluated as the next iteration.
    revise = [*started, evaluated("needs_revision")]
    assert decide(state_of(*revise, spec=spec), NOW) == CallModel()
    assert decide(state_of(*revise, END, spec=spec), NOW) == GradeOutcome(
        outcome_id="outc_1", iteration=1
    )
    satisfied = [*revise, END, evaluated("satisfied", 1)]
    assert decide(state_of(*satisfied, spec=spec), NOW) == Complete(
        reason="the model ended its turn"
    )
    # The last evaluation still found it short: one more turn to say so, then the end.
    short = [*started, evaluated("max_iterations_reached")]
    assert decide(state_of(*short, spec=spec), NOW) == CallModel()
    assert decide(state_of(*short, END, spec=spec), NOW) == Complete(
        reason="the model ended its turn"
    )


def test_the_budget_is_checked_before_the_grader_and_before_a_revision() -> None:
    spec = AgentSpec(turn_end="idle", budgets=Budgets(max_cost_usd=1.0))
    paid = ModelResponse(content=[TextBlock(text="w")], stop_reason="end_turn", cost_usd=1.0)
    reached = ReachBudget(budget="cost", limit=1.0, used=1.0)
    assert decide(state_of(defined(), paid, spec=spec), NOW) == reached
    graded = [defined(), END, evaluated("needs_revision", cost=1.5)]
    assert decide(state_of(*graded, spec=spec), NOW) == ReachBudget(
        budget="cost", limit=1.0, used=1.5
    )
    # The completion judge's failed verdict sends the model back only within budget too.
    judged = AgentSpec(
        completion=CompletionCondition(kind="command", command="pytest"),
        budgets=Budgets(max_cost_usd=1.0),
    )
    failed = [UserMessage(text="go"), paid, JudgeVerdict(passed=False, judge="command")]
    assert decide(state_of(*failed, spec=judged), NOW) == reached
    # A judge model is asked only within budget; a command check costs no tokens.
    by_model = msgspec.structs.replace(judged, completion=CompletionCondition(kind="judge"))
    assert decide(state_of(UserMessage(text="go"), paid, spec=by_model), NOW) == reached
    assert decide(state_of(UserMessage(text="go"), paid, spec=judged), NOW) == Judge()


def test_an_interrupt_ends_the_open_outcome_even_of_an_idle_session() -> None:
    spec = AgentSpec(turn_end="idle")
    running = [defined(), SessionStatus(status="running"), UserInterrupt()]
    assert decide(state_of(*running, spec=spec), NOW) == InterruptOutcome(
        outcome_id="outc_1", iteration=0
    )
    ended = [*running, evaluated("interrupted")]
    assert decide(state_of(*ended, spec=spec), NOW) == Pause(reason="interrupted by the user")
    # A budget stopped it mid-outcome: the interrupt still ends the outcome, then it waits.
    stopped = [defined(), END, SessionStatus(status="idle", reason="budget"), UserInterrupt()]
    assert decide(state_of(*stopped, spec=spec), NOW) == InterruptOutcome(
        outcome_id="outc_1", iteration=0
    )
    assert decide(state_of(*stopped, evaluated("interrupted"), spec=spec), NOW) == Wait(
        reason="waiting for user input"
    )
