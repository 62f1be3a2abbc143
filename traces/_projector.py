"""A session's spans, projected from its log one event at a time: pure, no clock, no I/O.

The live brain and `keel trace` both feed a session's events, in seq order, to a
`SessionProjector` and get back the spans each event closes; since ids come from the session
id and seqs (`traces._ids`) and times from the events' `at`, a replay of the log yields the
same spans, with the same ids, as the live run did.

- A **turn** is one trace: its root span opens at the input (or the `running`) that sets the
  session to work and closes when the session comes to rest (idle, paused, ended, or waiting
  on anything but its tools, approvals or its client's results).
- Under it: a span per **model call** (GenAI `chat`, from the response's `at` less its
  duration), per **tool call** (`execute_tool`, from its first dispatch, or its request
  when it was never dispatched, to its one outcome), per **approval** waited for, per
  **compaction** (a model summary's spend is counted there), per **outcome evaluation**
  (the grader's own spend is counted there).
- How each kind is named and attributed is `traces._genai`'s; what is open between events
  (and the session as its spans name it) is `traces._open`'s.

Message and tool contents are left out: a trace says where time and tokens went, the log
says what was said.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from schemas import (
    WAITING_FOR_APPROVAL,
    WAITING_FOR_CLIENT,
    WAITING_FOR_TOOLS,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    BudgetReached,
    ContextCompacted,
    IterationEnded,
    IterationStarted,
    JudgeVerdict,
    LoopDetected,
    ModelResponse,
    OutcomeDefined,
    OutcomeEvaluated,
    OutcomeEvaluationStarted,
    Recorded,
    SessionCreated,
    SessionStatus,
    SessionUpdated,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    Usage,
    UserInterrupt,
    UserMessage,
    WorkspaceChecked,
    WorkspaceRestored,
    event_type,
)
from traces._genai import (
    approval_span,
    compaction_span,
    evaluation_span,
    model_call_span,
    tool_span,
    turn_span,
)
from traces._ids import span_id, trace_id
from traces._open import Agent, OpenApproval, OpenCall, OpenEvaluation, OpenTurn, Place
from traces._spans import AttributeValue, Span, SpanEvent

# Statuses at which a turn is over.
AT_REST: Final = frozenset({"idle", "paused", "completed", "failed", "cancelled"})
# Waiting on these is part of the turn: the session goes on by itself when they arrive.
WAITS_IN_TURN: Final = frozenset({WAITING_FOR_TOOLS, WAITING_FOR_APPROVAL, WAITING_FOR_CLIENT})


def unix_ns(at: float) -> int:
    return round(at * 1e9)


class SessionProjector:
    """The open spans of one session, as of `seq`; `feed` the next event, get the spans it
    closes. Events at or below `seq` are ignored (a reader may see one twice)."""

    def __init__(self, session_id: str) -> None:
        self.seq = 0
        self.status = ""
        self._agent = Agent(session_id=session_id)
        self._turn: OpenTurn | None = None
        self._calls: dict[str, OpenCall] = {}
        self._approvals: dict[str, OpenApproval] = {}
        self._evaluations: dict[tuple[str, int], OpenEvaluation] = {}

    @property
    def session_id(self) -> str:
        return self._agent.session_id

    def open_spans(self) -> int:
        return (
            (self._turn is not None)
            + len(self._calls)
            + len(self._approvals)
            + len(self._evaluations)
        )

    def feed(self, recorded: Recorded) -> list[Span]:
        if recorded.seq <= self.seq:
            return []
        self.seq = seq = recorded.seq
        at = unix_ns(recorded.at)
        event = recorded.event
        match event:
            case SessionCreated(spec=spec, title=title, managed=managed, thread=origin):
                agent_id = managed.agent_id if managed is not None else ""
                self._agent = Agent(
                    session_id=self.session_id,
                    title=title,
                    agent_id=agent_id,
                    model=spec.model,
                    thread=origin,
                )
            case SessionUpdated(title=title) if title is not None:
                self._agent = msgspec.structs.replace(self._agent, title=title)
            case UserMessage() | OutcomeDefined():
                self._open_turn(seq, at)
            case SessionStatus():
                return self._status(event, seq, at)
            case ModelResponse():
                self._count(event.usage, event.cost_usd, model_calls=1)
                return [model_call_span(self._agent, self._place(seq), event, seq, at)]
            case ToolRequested() | ToolDispatched() | ToolResult():
                return self._tool_event(event, seq, at)
            case ApprovalRequested() | ApprovalGranted() | ApprovalDenied() | ApprovalExpired():
                return self._approval_event(event, seq, at)
            case OutcomeEvaluationStarted(outcome_id=outcome_id, iteration=iteration):
                self._evaluations[(outcome_id, iteration)] = self._evaluation(seq, at)
            case OutcomeEvaluated(outcome_id=outcome_id, iteration=iteration):
                self._count(event.usage, event.cost_usd)
                started = self._evaluations.pop((outcome_id, iteration), None)
                # Never started (an interrupt ended it): a span at its end alone.
                started = started or self._evaluation(seq, at)
                return [evaluation_span(self._agent, started, event, at)]
            case ContextCompacted():
                self._count(event.usage, event.cost_usd)
                return [compaction_span(self._agent, self._place(seq), event, seq, at)]
            case BudgetReached() | LoopDetected() | JudgeVerdict() | UserInterrupt():
                self._note(event, at)
            case IterationStarted() | IterationEnded() | WorkspaceChecked() | WorkspaceRestored():
                self._note_iteration(event, at)
            case _:
                # The rest opens or closes no span (and a newer event type is not ours yet).
                pass
        return []

    # -- the turn -----------------------------------------------------------------------------

    def _status(self, event: SessionStatus, seq: int, at: int) -> list[Span]:
        self.status = event.status
        if event.status == "running":
            self._open_turn(seq, at)
        elif event.status in AT_REST or (
            event.status == "waiting" and event.reason not in WAITS_IN_TURN
        ):
            turn, self._turn = self._turn, None
            if turn is not None:
                return [turn_span(self._agent, turn, seq, at, event.status, event.reason)]
        return []

    def _open_turn(self, seq: int, at: int) -> None:
        if self._turn is None:
            self._turn = OpenTurn(
                trace_id=trace_id(self.session_id, seq),
                span_id=span_id(self.session_id, "turn", str(seq)),
                first_seq=seq,
                start_ns=at,
            )

    def _place(self, seq: int) -> Place:
        """Under the open turn; with none open, a trace of its own."""
        if self._turn is None:
            return Place(trace_id=trace_id(self.session_id, seq), parent_span_id=None)
        return Place(trace_id=self._turn.trace_id, parent_span_id=self._turn.span_id)

    def _count(self, usage: Usage, cost_usd: float, *, model_calls: int = 0) -> None:
        if (turn := self._turn) is not None:
            turn.model_calls += model_calls
            turn.usage = turn.usage + usage
            turn.cost_usd += cost_usd

    def _note(
        self, event: BudgetReached | LoopDetected | JudgeVerdict | UserInterrupt, at: int
    ) -> None:
        """A moment of the turn: a guard that stopped it, a verdict, an interrupt."""
        if self._turn is None:
            return
        attributes: dict[str, AttributeValue] = {}
        match event:
            case BudgetReached(budget=budget, limit=limit, used=used):
                attributes = {"keel.budget": budget, "keel.limit": limit, "keel.used": used}
            case LoopDetected(signature=signature, repeats=repeats):
                attributes = {"keel.signature": signature, "keel.repeats": repeats}
            case JudgeVerdict(passed=passed, judge=judge):
                attributes = {"keel.judge": judge, "keel.passed": passed}
        name = event_type(event)
        self._turn.events.append(SpanEvent(name=name, time_ns=at, attributes=attributes))

    def _note_iteration(
        self,
        event: IterationStarted | IterationEnded | WorkspaceChecked | WorkspaceRestored,
        at: int,
    ) -> None:
        """A context reset's moment of the turn (keel_context_resets): an iteration's start
        or end, the test ratchet's check and what it put back."""
        if self._turn is None:
            return
        attributes: dict[str, AttributeValue] = {"keel.iteration": event.iteration}
        match event:
            case IterationStarted(handoff=handoff, protected=protected):
                attributes["keel.handoff_files"] = [f.path for f in handoff if f.text is not None]
                attributes["keel.protected_files"] = len(protected)
            case IterationEnded(reason=reason):
                attributes["keel.reason"] = reason
            case WorkspaceChecked(changes=changes):
                attributes["keel.changed"] = [change.path for change in changes]
            case WorkspaceRestored(paths=paths, unrestorable=unrestorable):
                attributes["keel.restored"] = paths
                attributes["keel.unrestorable"] = unrestorable
        name = event_type(event)
        self._turn.events.append(SpanEvent(name=name, time_ns=at, attributes=attributes))

    # -- spans under it -----------------------------------------------------------------------

    def _tool_event(
        self, event: ToolRequested | ToolDispatched | ToolResult, seq: int, at: int
    ) -> list[Span]:
        match event:
            case ToolRequested(call_id=call_id, name=name):
                self._calls[call_id] = OpenCall(place=self._place(seq), name=name, requested_ns=at)
                if self._turn is not None:
                    self._turn.tool_calls += 1
            case ToolDispatched(call_id=call_id, attempt=attempt, sandbox_id=sandbox_id):
                if (call := self._calls.get(call_id)) is not None:
                    call.dispatched_ns = at if call.dispatched_ns is None else call.dispatched_ns
                    call.attempt = attempt
                    call.sandbox_id = sandbox_id
                    dispatched: dict[str, AttributeValue] = {
                        "keel.tool.attempt": attempt,
                        "keel.sandbox.id": sandbox_id,
                    }
                    call.dispatches.append(
                        SpanEvent(name="tool.dispatched", time_ns=at, attributes=dispatched)
                    )
            case ToolResult(call_id=call_id):
                closed: list[Span] = []
                if call_id in self._approvals:
                    closed.append(self._decided(call_id, at, "unanswered"))
                if (call := self._calls.pop(call_id, None)) is not None:
                    closed.append(tool_span(self._agent, call_id, call, event, at))
                return closed
        return []

    def _approval_event(
        self,
        event: ApprovalRequested | ApprovalGranted | ApprovalDenied | ApprovalExpired,
        seq: int,
        at: int,
    ) -> list[Span]:
        if isinstance(event, ApprovalRequested):
            if (call := self._calls.get(event.call_id)) is not None:
                self._approvals[event.call_id] = OpenApproval(
                    place=call.place,
                    span_id=span_id(self.session_id, "approval", str(seq)),
                    tool=call.name,
                    start_ns=at,
                    expires_at=event.expires_at,
                )
            return []
        if event.call_id not in self._approvals:
            return []
        match event:
            case ApprovalGranted(by=by):
                return [self._decided(event.call_id, at, "granted", by)]
            case ApprovalDenied(by=by):
                return [self._decided(event.call_id, at, "denied", by)]
        return [self._decided(event.call_id, at, "expired")]

    def _decided(self, call_id: str, at: int, decision: str, by: str = "") -> Span:
        approval = self._approvals.pop(call_id)
        return approval_span(self._agent, call_id, approval, at, decision, by)

    def _evaluation(self, seq: int, at: int) -> OpenEvaluation:
        return OpenEvaluation(
            place=self._place(seq),
            span_id=span_id(self.session_id, "evaluation", str(seq)),
            start_ns=at,
        )


def project(session_id: str, log: Iterable[Recorded]) -> list[Span]:
    """Every span a session's log closes, in the order they close."""
    projector = SessionProjector(session_id)
    return [span for recorded in log for span in projector.feed(recorded)]
