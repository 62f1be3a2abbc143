"""`decide(state, now) -> action`: what a brain does next, as a pure function of the state.

No I/O and no clock: `now` is passed in (approvals expire, wall-clock budgets run out). The
brain loops `decide` -> perform -> append until the action is `Wait` or `Complete`, so each
call returns one step; tool calls ready together are dispatched together, to run in parallel.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from brain.compaction import compaction_cut
from brain.fold import call_signature
from brain.iterations import (
    CheckWorkspace,
    EndIteration,
    RestoreWorkspace,
    StartIteration,
    next_step,
)
from brain.ratchet import refusal
from brain.state import SessionState, ToolCall
from brain.threads import is_thread_tool
from schemas import (
    TERMINAL_STATUSES,
    WAITING_FOR_APPROVAL,
    WAITING_FOR_CLIENT,
    WAITING_FOR_TOOLS,
    BudgetName,
    ToolResultBlock,
    ToolUseBlock,
)

# The same call this many times in a row is a loop: the session pauses with a reason.
LOOP_REPEATS: Final = 5


class CallModel(msgspec.Struct, frozen=True, tag=True):
    """Send the conversation to the model and record its response."""


class Compact(msgspec.Struct, frozen=True, tag=True):
    """Before the next model call, replace the conversation through `up_to_seq` by a
    handoff built from the log or a summary a model makes (brain/compaction.py)."""

    up_to_seq: int
    strategy: Literal["handoff", "summary"]
    tokens_before: int


class RequestTools(msgspec.Struct, frozen=True, tag=True):
    """Record `tool.requested` for the tool_use blocks of the model's last response."""

    calls: list[ToolUseBlock]


class AskApproval(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    expires_at: float


class ExpireApproval(msgspec.Struct, frozen=True, tag=True):
    call_id: str


class Refuse(msgspec.Struct, frozen=True, tag=True):
    """Record the call's one outcome as an error without running it."""

    call_id: str
    reason: str


class Dispatch(msgspec.Struct, frozen=True, tag=True):
    """Send these calls to the hands, all at once."""

    call_ids: list[str]


class RunThreadCalls(msgspec.Struct, frozen=True, tag=True):
    """Spawn or message the threads these calls name: the brain runs them, never the hands."""

    call_ids: list[str]


class ReachBudget(msgspec.Struct, frozen=True, tag=True):
    budget: BudgetName
    limit: float
    used: float


class DetectLoop(msgspec.Struct, frozen=True, tag=True):
    signature: str
    repeats: int


class Pause(msgspec.Struct, frozen=True, tag=True):
    reason: str


class Judge(msgspec.Struct, frozen=True, tag=True):
    """Ask the completion condition (command oracle or judge model) whether the goal is met."""


class GradeOutcome(msgspec.Struct, frozen=True, tag=True):
    """Ask the grader whether the work meets the defined outcome's rubric; `resume` when
    its evaluation was started already (by a brain that died before recording its end)."""

    outcome_id: str
    iteration: int
    resume: bool = False


class InterruptOutcome(msgspec.Struct, frozen=True, tag=True):
    """Record that the user's interrupt ended the open outcome: it is evaluated no more."""

    outcome_id: str
    iteration: int


class Complete(msgspec.Struct, frozen=True, tag=True):
    reason: str


class Wait(msgspec.Struct, frozen=True, tag=True):
    """Nothing to do until something arrives: user input, an approval, tool outcomes."""

    reason: str


Action = (
    CallModel
    | Compact
    | RequestTools
    | AskApproval
    | ExpireApproval
    | Refuse
    | Dispatch
    | RunThreadCalls
    | ReachBudget
    | DetectLoop
    | Pause
    | Judge
    | GradeOutcome
    | InterruptOutcome
    | StartIteration
    | EndIteration
    | CheckWorkspace
    | RestoreWorkspace
    | Complete
    | Wait
)


def decide(state: SessionState, now: float) -> Action:
    if state.spec is None:
        return Wait(reason="the session has no spec yet")
    if state.status in TERMINAL_STATUSES:
        if state.status == "cancelled":
            # Every call still gets its one outcome: those not sent never will be; those in
            # flight are cancelled in their sandbox, and their outcomes are awaited.
            for call in state.open_calls.values():
                if call.phase != "dispatched":
                    return Refuse(call_id=call.call_id, reason="the session was cancelled")
            if state.open_calls:
                return Wait(reason="waiting for cancelled calls to end")
        return Wait(reason=f"the session is {state.status}")
    if state.status == "paused":
        return Wait(reason=f"paused: {state.status_reason}" if state.status_reason else "paused")
    if state.interrupted and state.outcome is not None and state.outcome.open:
        # Even an idle session's (one a budget stopped mid-outcome): the outcome ends.
        return InterruptOutcome(
            outcome_id=state.outcome.outcome_id, iteration=state.outcome.iteration
        )
    idle_since_input = state.status == "idle" and state.status_seq > state.input_seq
    if state.spec.turn_end == "idle" and idle_since_input:
        # The turn is over (ended, interrupted, out of budget) until the user says more.
        return Wait(reason="waiting for user input")
    if state.interrupted:
        return _interrupt(state)
    loop = _loop_guard(state)
    if loop is not None:
        return loop
    unrequested = _unrequested_tool_uses(state)
    if unrequested:
        return RequestTools(calls=unrequested)
    if state.open_calls:
        return _next_for_calls(state, now)
    iteration_step = next_step(state)
    if iteration_step is not None:
        return iteration_step
    if state.messages and state.messages[-1].role == "user":
        # Budgets are checked before spending more on the model, not before calls the model
        # already asked for: a paused session never holds a call without its outcome.
        return _budget_guard(state, now) or _call_model(state)
    if not state.messages:
        return Wait(reason="waiting for user input")
    return _finish(state, now)


def _interrupt(state: SessionState) -> Action:
    """A session that idles between turns ends the turn: calls that have not started never
    will (each gets its one outcome), those running finish and are recorded. Otherwise the
    session pauses until resumed."""
    assert state.spec is not None
    if state.spec.turn_end == "idle":
        for call in state.open_calls.values():
            if call.phase != "dispatched":
                return Refuse(call_id=call.call_id, reason="interrupted by the user")
    return Pause(reason="interrupted by the user")


def _budget_guard(state: SessionState, now: float) -> ReachBudget | None:
    assert state.spec is not None
    # Once reached, a paused session's guard stays quiet until it is resumed; a session that
    # idles between turns is stopped again by every turn its input asks for.
    if state.budget_reached is not None and state.spec.turn_end == "complete":
        return None
    budgets = state.spec.budgets
    checks: list[tuple[BudgetName, float | None, float]] = [
        ("tokens", budgets.max_tokens, state.usage.total_tokens),
        ("cost", budgets.max_cost_usd, state.cost_usd),
        # A thread's turns are the session's too (its tokens and cost are folded in).
        ("turns", budgets.max_turns, state.turns + sum(t.turns for t in state.threads.values())),
        ("wall_clock", budgets.max_wall_seconds, now - state.created_at),
    ]
    for name, limit, used in checks:
        if limit is not None and used >= limit:
            return ReachBudget(budget=name, limit=float(limit), used=float(used))
    return None


def _loop_guard(state: SessionState) -> DetectLoop | None:
    recent = state.recent_calls[-LOOP_REPEATS:]
    if (
        state.loop_detected is None
        and len(recent) == LOOP_REPEATS
        and len(set(recent)) == 1
        and _unfinished_call_with(state, recent[-1])
    ):
        return DetectLoop(signature=recent[-1], repeats=LOOP_REPEATS)
    return None


def _unfinished_call_with(state: SessionState, signature: str) -> bool:
    """The loop is caught before its latest repeat runs, not after."""
    return any(
        call_signature(call.name, call.input) == signature
        for call in state.open_calls.values()
        if call.phase == "requested"
    )


def _unrequested_tool_uses(state: SessionState) -> list[ToolUseBlock]:
    """tool_use blocks of the last response that have neither a request nor a result."""
    at = next(
        (
            i
            for i in range(len(state.messages) - 1, -1, -1)
            if state.messages[i].role == "assistant"
        ),
        None,
    )
    if at is None:
        return []
    last = state.messages[at]
    answered = {
        block.call_id
        for message in state.messages[at + 1 :]
        for block in message.content
        if isinstance(block, ToolResultBlock)
    }
    return [
        block
        for block in last.content
        if isinstance(block, ToolUseBlock)
        and block.call_id not in state.open_calls
        and block.call_id not in answered
    ]


def _next_for_calls(state: SessionState, now: float) -> Action:
    assert state.spec is not None
    ready: list[str] = []
    waiting_for: set[str] = set()
    for call in state.open_calls.values():
        action = _next_for_call(state, call, now)
        if action is None:
            ready.append(call.call_id)
        elif isinstance(action, Wait):
            waiting_for.add(action.reason)
        else:
            return action
    if ready:
        threaded = [c for c in ready if is_thread_tool(state.open_calls[c].name)]
        return RunThreadCalls(call_ids=threaded) if threaded else Dispatch(call_ids=ready)
    for reason in (WAITING_FOR_APPROVAL, WAITING_FOR_CLIENT):
        if reason in waiting_for:
            return Wait(reason=reason)
    return Wait(reason=WAITING_FOR_TOOLS)


def waits_on_user(state: SessionState, now: float) -> list[tuple[ToolCall, str]]:
    """The open calls that wait on the user, with what for (`WAITING_FOR_APPROVAL` or
    `WAITING_FOR_CLIENT`), in the order they were requested."""
    waiting: list[tuple[ToolCall, str]] = []
    for call in state.open_calls.values():
        action = _next_for_call(state, call, now)
        if isinstance(action, Wait) and action.reason in (WAITING_FOR_APPROVAL, WAITING_FOR_CLIENT):
            waiting.append((call, action.reason))
    return waiting


def _next_for_call(state: SessionState, call: ToolCall, now: float) -> Action | None:
    """The action one open call needs; None when it is ready to dispatch."""
    assert state.spec is not None
    if call.phase == "requested":
        refused = refusal(state, call)
        if refused is not None:
            return Refuse(call_id=call.call_id, reason=refused)
        permission = state.spec.permissions.get(call.name, state.spec.default_permission)
        if permission == "deny":
            return Refuse(call_id=call.call_id, reason=f"the policy denies {call.name}")
        if permission == "ask":
            return AskApproval(call_id=call.call_id, expires_at=now + state.spec.approval_timeout_s)
        return _unless_on_client(state, call)
    if call.phase == "awaiting_approval":
        if call.approval_expires_at is not None and now >= call.approval_expires_at:
            return ExpireApproval(call_id=call.call_id)
        return Wait(reason=WAITING_FOR_APPROVAL)
    if call.phase == "approved":
        return _unless_on_client(state, call)
    if call.phase in ("denied", "expired"):
        return Refuse(call_id=call.call_id, reason=f"the approval was {call.phase}")
    return Wait(reason="in flight")


def _unless_on_client(state: SessionState, call: ToolCall) -> Wait | None:
    """A call the client runs is never dispatched: the client posts its one result."""
    assert state.spec is not None
    on_client = state.spec.runs_on_client(call.name) and not is_thread_tool(call.name)
    return Wait(reason=WAITING_FOR_CLIENT) if on_client else None


def _finish(state: SessionState, now: float) -> Action:
    """The model ended its turn without asking for tools."""
    assert state.spec is not None
    outcome = state.outcome
    if outcome is not None and outcome.open:
        # The grader's evaluation sends the worker back (its feedback is the next user
        # turn) or ends the outcome; until then every turn the worker ends is evaluated.
        # The grader's requests are model requests: the budget is checked first.
        resume = outcome.evaluating and outcome.started_seq > state.messages[-1].seq
        return _budget_guard(state, now) or GradeOutcome(
            outcome_id=outcome.outcome_id, iteration=outcome.iteration, resume=resume
        )
    if state.spec.completion.kind == "none":
        return Complete(reason="the model ended its turn")
    last_response = state.messages[-1].seq
    verdict = state.verdict
    if verdict is None or verdict.seq < last_response:
        # A judge model's request is a model request too; a command costs no tokens.
        judging_by_model = state.spec.completion.kind == "judge"
        return (_budget_guard(state, now) if judging_by_model else None) or Judge()
    if verdict.passed:
        return Complete(reason=f"the {verdict.judge} judge passed: {verdict.detail}")
    # The model must see the failed verdict (context building shows it) and try again.
    return _budget_guard(state, now) or _call_model(state)


def _call_model(state: SessionState) -> CallModel | Compact:
    """Call the model, after compacting a context that would pass its share of the window."""
    assert state.spec is not None
    cut = compaction_cut(state)
    if cut is None:
        return CallModel()
    return Compact(
        up_to_seq=cut, strategy=state.spec.context.strategy, tokens_before=state.context_tokens
    )
