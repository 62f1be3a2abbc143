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
  **compaction**, per **outcome evaluation** (the grader's own spend is counted there).
- Token usage is on the model and grader spans only (as `gen_ai.usage.*`), so a receiver
  that adds up a session's spans finds keel's totals; the turn's totals are `keel.*`.

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
    JudgeVerdict,
    LoopDetected,
    ModelResponse,
    ModelSpec,
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
    event_type,
)
from traces._ids import span_id, trace_id
from traces._spans import AttributeValue, Span, SpanEvent

# Statuses at which a turn is over.
AT_REST: Final = frozenset({"idle", "paused", "completed", "failed", "cancelled"})
# Waiting on these is part of the turn: the session goes on by itself when they arrive.
WAITS_IN_TURN: Final = frozenset({WAITING_FOR_TOOLS, WAITING_FOR_APPROVAL, WAITING_FOR_CLIENT})


def unix_ns(at: float) -> int:
    return round(at * 1e9)


class _Turn(msgspec.Struct, kw_only=True):
    trace_id: str
    span_id: str
    first_seq: int
    start_ns: int
    model_calls: int = 0
    tool_calls: int = 0
    usage: Usage = Usage()
    cost_usd: float = 0.0
    events: list[SpanEvent] = msgspec.field(default_factory=list)


class _Place(msgspec.Struct, frozen=True, kw_only=True):
    """Where a span goes: its trace and its parent (None: it is the root)."""

    trace_id: str
    parent_span_id: str | None


class _Call(msgspec.Struct, kw_only=True):
    place: _Place
    name: str
    requested_ns: int
    dispatched_ns: int | None = None
    attempt: int = 0
    sandbox_id: str = ""
    dispatches: list[SpanEvent] = msgspec.field(default_factory=list)


class _Approval(msgspec.Struct, kw_only=True):
    place: _Place
    span_id: str
    tool: str
    start_ns: int
    expires_at: float


class _Evaluation(msgspec.Struct, kw_only=True):
    place: _Place
    span_id: str
    start_ns: int


class SessionProjector:
    """The open spans of one session, as of `seq`; `feed` the next event, get the spans it
    closes. Events at or below `seq` are ignored (a reader may see one twice)."""

    def __init__(self, session_id: str) -> None:
        self.session_id: Final = session_id
        self.seq = 0
        self.status = ""
        self._model = ModelSpec()
        self._title = ""
        self._agent_id = ""
        self._turn: _Turn | None = None
        self._calls: dict[str, _Call] = {}
        self._approvals: dict[str, _Approval] = {}
        self._evaluations: dict[tuple[str, int], _Evaluation] = {}

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
            case SessionCreated(spec=spec, title=title, managed=managed):
                self._model = spec.model
                self._title = title
                self._agent_id = managed.agent_id if managed is not None else ""
            case SessionUpdated(title=title) if title is not None:
                self._title = title
            case UserMessage() | OutcomeDefined():
                self._open_turn(seq, at)
            case SessionStatus():
                return self._status(event, seq, at)
            case ModelResponse():
                return [self._model_call(event, seq, at)]
            case ToolRequested() | ToolDispatched() | ToolResult():
                return self._tool_event(event, seq, at)
            case ApprovalRequested() | ApprovalGranted() | ApprovalDenied() | ApprovalExpired():
                return self._approval_event(event, seq, at)
            case OutcomeEvaluationStarted(outcome_id=outcome_id, iteration=iteration):
                self._evaluations[(outcome_id, iteration)] = _Evaluation(
                    place=self._place(seq),
                    span_id=span_id(self.session_id, "evaluation", str(seq)),
                    start_ns=at,
                )
            case OutcomeEvaluated():
                return [self._evaluation_span(event, seq, at)]
            case ContextCompacted():
                return [self._compaction_span(event, seq, at)]
            case BudgetReached() | LoopDetected() | JudgeVerdict() | UserInterrupt():
                self._note(event, at)
            case _:
                # The rest opens or closes no span (and a newer event type is not ours yet).
                pass
        return []

    def _status(self, event: SessionStatus, seq: int, at: int) -> list[Span]:
        self.status = event.status
        if event.status == "running":
            self._open_turn(seq, at)
        elif event.status in AT_REST or (
            event.status == "waiting" and event.reason not in WAITS_IN_TURN
        ):
            return self._close_turn(seq, at, event.status, event.reason)
        return []

    def _tool_event(
        self, event: ToolRequested | ToolDispatched | ToolResult, seq: int, at: int
    ) -> list[Span]:
        match event:
            case ToolRequested(call_id=call_id, name=name):
                self._calls[call_id] = _Call(place=self._place(seq), name=name, requested_ns=at)
                if self._turn is not None:
                    self._turn.tool_calls += 1
            case ToolDispatched(call_id=call_id, attempt=attempt, sandbox_id=sandbox_id):
                if (call := self._calls.get(call_id)) is not None:
                    self._dispatched(call, at, attempt, sandbox_id)
            case ToolResult(call_id=call_id):
                closed: list[Span] = []
                if call_id in self._approvals:
                    closed.append(self._approval_span(call_id, at, "unanswered"))
                if (call := self._calls.pop(call_id, None)) is not None:
                    closed.append(self._tool_span(call_id, call, event, at))
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
                self._approvals[event.call_id] = _Approval(
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
                return [self._approval_span(event.call_id, at, "granted", by)]
            case ApprovalDenied(by=by):
                return [self._approval_span(event.call_id, at, "denied", by)]
        return [self._approval_span(event.call_id, at, "expired")]

    # -- the turn -----------------------------------------------------------------------------

    def _place(self, seq: int) -> _Place:
        """Under the open turn; with none open, a trace of its own."""
        if self._turn is None:
            return _Place(trace_id=trace_id(self.session_id, seq), parent_span_id=None)
        return _Place(trace_id=self._turn.trace_id, parent_span_id=self._turn.span_id)

    def _open_turn(self, seq: int, at: int) -> None:
        if self._turn is None:
            self._turn = _Turn(
                trace_id=trace_id(self.session_id, seq),
                span_id=span_id(self.session_id, "turn", str(seq)),
                first_seq=seq,
                start_ns=at,
            )

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

    def _close_turn(self, seq: int, at: int, status: str, reason: str) -> list[Span]:
        turn, self._turn = self._turn, None
        if turn is None:
            return []
        agent = self._title
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.conversation.id": self.session_id,
            **({"gen_ai.agent.name": agent} if agent else {}),
            **({"gen_ai.agent.id": self._agent_id} if self._agent_id else {}),
            "gen_ai.provider.name": self._model.provider,
            "gen_ai.request.model": self._model.name,
            "keel.turn.first_seq": turn.first_seq,
            "keel.turn.last_seq": seq,
            "keel.turn.status": status,
            "keel.turn.reason": reason,
            "keel.turn.model_calls": turn.model_calls,
            "keel.turn.tool_calls": turn.tool_calls,
            "keel.usage.input_tokens": turn.usage.input_tokens,
            "keel.usage.output_tokens": turn.usage.output_tokens,
            "keel.cost_usd": turn.cost_usd,
        }
        failed = status == "failed"
        return [
            Span(
                trace_id=turn.trace_id,
                span_id=turn.span_id,
                parent_span_id=None,
                name=f"invoke_agent {agent}" if agent else "invoke_agent",
                kind="internal",
                start_ns=turn.start_ns,
                end_ns=at,
                attributes=attributes,
                events=turn.events,
                status="error" if failed else "unset",
                status_message=reason if failed else "",
            )
        ]

    # -- spans under it -----------------------------------------------------------------------

    def _model_call(self, response: ModelResponse, seq: int, at: int) -> Span:
        if (turn := self._turn) is not None:
            turn.model_calls += 1
            turn.usage = turn.usage + response.usage
            turn.cost_usd += response.cost_usd
        place = self._place(seq)
        model = self._model
        failed = response.stop_reason == "error"
        return Span(
            trace_id=place.trace_id,
            span_id=span_id(self.session_id, "model", str(seq)),
            parent_span_id=place.parent_span_id,
            name=f"chat {model.name}",
            kind="client",
            start_ns=at - round(response.duration_ms * 1e6),
            end_ns=at,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": model.provider,
                "gen_ai.system": model.provider,
                "gen_ai.conversation.id": self.session_id,
                "gen_ai.request.model": model.name,
                "gen_ai.request.max_tokens": model.max_output_tokens,
                **(
                    {"gen_ai.request.temperature": model.temperature}
                    if model.temperature is not None
                    else {}
                ),
                "gen_ai.response.model": response.model,
                "gen_ai.response.finish_reasons": [response.stop_reason],
                **_usage(response.usage),
                "keel.cost_usd": response.cost_usd,
                "keel.seq": seq,
                "keel.context_seq": response.context_seq,
            },
            status="error" if failed else "unset",
        )

    def _dispatched(self, call: _Call, at: int, attempt: int, sandbox_id: str) -> None:
        if call.dispatched_ns is None:
            call.dispatched_ns = at
        call.attempt = attempt
        call.sandbox_id = sandbox_id
        call.dispatches.append(
            SpanEvent(
                name="tool.dispatched",
                time_ns=at,
                attributes={"keel.tool.attempt": attempt, "keel.sandbox.id": sandbox_id},
            )
        )

    def _tool_span(self, call_id: str, call: _Call, result: ToolResult, at: int) -> Span:
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.conversation.id": self.session_id,
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call_id,
            "keel.tool.outcome": result.outcome,
            "keel.tool.attempt": call.attempt,
            "keel.sandbox.id": call.sandbox_id,
            "keel.tool.duration_ms": result.duration_ms,
            "keel.tool.sandbox_lost": result.sandbox_lost,
            "keel.tool.from_client": result.from_client,
        }
        if result.is_error:
            attributes["error.type"] = "tool_error" if result.outcome == "error" else "unknown"
        return Span(
            trace_id=call.place.trace_id,
            span_id=span_id(self.session_id, "tool", call_id),
            parent_span_id=call.place.parent_span_id,
            name=f"execute_tool {call.name}",
            kind="internal",
            start_ns=call.requested_ns if call.dispatched_ns is None else call.dispatched_ns,
            end_ns=at,
            attributes=attributes,
            events=call.dispatches,
            status="error" if result.is_error else "unset",
        )

    def _approval_span(self, call_id: str, at: int, decision: str, by: str = "") -> Span:
        approval = self._approvals.pop(call_id)
        return Span(
            trace_id=approval.place.trace_id,
            span_id=approval.span_id,
            parent_span_id=approval.place.parent_span_id,
            name=f"await_approval {approval.tool}",
            kind="internal",
            start_ns=approval.start_ns,
            end_ns=at,
            attributes={
                "gen_ai.conversation.id": self.session_id,
                "keel.tool.name": approval.tool,
                "keel.tool.call_id": call_id,
                "keel.approval.decision": decision,
                "keel.approval.by": by,
                "keel.approval.expires_at": approval.expires_at,
            },
        )

    def _evaluation_span(self, evaluated: OutcomeEvaluated, seq: int, at: int) -> Span:
        key = (evaluated.outcome_id, evaluated.iteration)
        started = self._evaluations.pop(key, None) or _Evaluation(
            place=self._place(seq),
            span_id=span_id(self.session_id, "evaluation", str(seq)),
            start_ns=at,
        )
        if (turn := self._turn) is not None:
            turn.usage = turn.usage + evaluated.usage
            turn.cost_usd += evaluated.cost_usd
        failed = evaluated.result == "failed"
        return Span(
            trace_id=started.place.trace_id,
            span_id=started.span_id,
            parent_span_id=started.place.parent_span_id,
            name="invoke_agent grader",
            kind="internal",
            start_ns=started.start_ns,
            end_ns=at,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "grader",
                "gen_ai.conversation.id": self.session_id,
                "gen_ai.response.model": evaluated.model,
                **_usage(evaluated.usage),
                "keel.cost_usd": evaluated.cost_usd,
                "keel.outcome.id": evaluated.outcome_id,
                "keel.outcome.iteration": evaluated.iteration,
                "keel.outcome.result": evaluated.result,
            },
            status="error" if failed else "unset",
            status_message=evaluated.explanation if failed else "",
        )

    def _compaction_span(self, compacted: ContextCompacted, seq: int, at: int) -> Span:
        place = self._place(seq)
        return Span(
            trace_id=place.trace_id,
            span_id=span_id(self.session_id, "compaction", str(seq)),
            parent_span_id=place.parent_span_id,
            name="compact_context",
            kind="internal",
            start_ns=at,
            end_ns=at,
            attributes={
                "gen_ai.conversation.id": self.session_id,
                "keel.compaction.up_to_seq": compacted.up_to_seq,
                "keel.compaction.tokens_before": compacted.tokens_before,
                "keel.compaction.tokens_after": compacted.tokens_after,
            },
        )


def _usage(usage: Usage) -> dict[str, AttributeValue]:
    """The GenAI conventions' usage attributes (cache counts only when there are some)."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
    }
    if usage.cache_read_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
    return attributes


def project(session_id: str, log: Iterable[Recorded]) -> list[Span]:
    """Every span a session's log closes, in the order they close."""
    projector = SessionProjector(session_id)
    return [span for recorded in log for span in projector.feed(recorded)]
