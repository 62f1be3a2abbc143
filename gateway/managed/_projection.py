"""A session's log as Managed Agents events: a projection, never stored.

keel's log stays keel's (hash-chained, seq-addressed, one event per fact); the Managed
Agents view of it is folded from it, deterministically, so every gateway shows the same
events with the same ids. One keel event may become several (a model response is a model
request span, a message, a tool use per call, and a usage report), so an event's id names
its place (`_event_ids`). A tool use's id is its call's `tool_use_id`: the id of its event.

Outcomes (`_outcomes`) are folded alongside: `Session.outcome_evaluations` and the
`span.outcome_evaluation_*` events. Live previews of a response (`event_start`,
`event_delta`) name the message they preview by `message_id_after`.

Pure: no I/O, no clock; times are the log's.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

import msgspec

from gateway.managed._event_ids import FIRST_USE, START, TEXT, CrossPosted, event_id
from gateway.managed._outcomes import Outcomes, span_usage
from gateway.managed._thread_events import ThreadsView
from schemas import (
    WAITING_FOR_APPROVAL,
    WAITING_FOR_CLIENT,
    WAITING_FOR_TOOLS,
    AgentSpec,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    BudgetReached,
    ContextCompacted,
    IterationStarted,
    LoopDetected,
    ModelResponse,
    OutcomeDefined,
    OutcomeEvaluated,
    OutcomeEvaluationOngoing,
    OutcomeEvaluationStarted,
    Recorded,
    SessionCreated,
    SessionStatus,
    SessionUpdated,
    TextBlock,
    ThreadMessageReceived,
    ThreadMessageSent,
    ThreadReplied,
    ThreadSpawned,
    ThreadWaiting,
    ToolResult,
    ToolUseBlock,
    Usage,
    UserInterrupt,
    UserMessage,
)

# Every type of session event the Managed Agents API names (the SDK's
# `BetaManagedAgentsSessionEventType`): what a list may be filtered by, whether or not keel
# makes events of it.
EventType = Literal[
    "user.message",
    "user.interrupt",
    "user.tool_confirmation",
    "user.custom_tool_result",
    "agent.custom_tool_use",
    "agent.message",
    "agent.thinking",
    "agent.mcp_tool_use",
    "agent.mcp_tool_result",
    "agent.tool_use",
    "agent.tool_result",
    "agent.thread_message_received",
    "agent.thread_message_sent",
    "agent.thread_context_compacted",
    "session.error",
    "session.status_rescheduled",
    "session.status_running",
    "session.status_idle",
    "session.status_terminated",
    "session.thread_created",
    "span.outcome_evaluation_start",
    "span.outcome_evaluation_end",
    "span.model_request_start",
    "span.model_request_end",
    "span.outcome_evaluation_ongoing",
    "user.define_outcome",
    "session.thread_status_running",
    "session.thread_status_idle",
    "session.thread_status_terminated",
    "user.tool_result",
    "session.thread_status_rescheduled",
    "session.updated",
    "system.message",
    "session.usage",
    "workflow_run.created",
    "workflow_run.status_running",
    "workflow_run.status_idle",
    "workflow_run.status_ended",
    "workflow_run.error",
    "workflow_run.phase_started",
    "workflow_run.phase_ended",
]


def rfc3339(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat().replace("+00:00", "Z")


def managed_status(status: str, reason: str) -> str:
    """A keel status as the Managed Agents API's four."""
    if status in ("failed", "cancelled"):
        return "terminated"
    if status == "running" or (status == "waiting" and reason == WAITING_FOR_TOOLS):
        return "running"
    return "idle"


def usage_view(usage: Usage, cost_usd: float) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "list_cost": {"amount": f"{cost_usd * 100:.6f}", "currency": "USD"},
    }


def budget_view(spec: AgentSpec) -> dict[str, Any] | None:
    """The spend ceiling, as `Session.budget` shows it: in cents, an integer unless it was
    given finer."""
    usd = spec.budgets.max_cost_usd
    if usd is None:
        return None
    cents = (Decimal(repr(usd)) * 100).normalize()
    return {"type": "limit", "max_list_cost": {"amount": f"{cents:f}", "currency": "USD"}}


def text_of(output: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": output}]


class CallView(msgspec.Struct, kw_only=True):
    tool_use_id: str
    name: str
    waiting_approval: bool = False
    on_client: bool = False


class Projection:
    """Folds a session's log, event by event, into Managed Agents events."""

    def __init__(self) -> None:
        self.spec = AgentSpec()
        self.calls: dict[str, CallView] = {}
        self.usage = Usage()
        self.cost_usd = 0.0
        # What stopped the last turn, when a guard did: `budget_reached` or `retries_exhausted`.
        self.guard: str | None = None
        self.outcomes = Outcomes()
        self.threads = ThreadsView()
        self.seq = 0

    def copy(self) -> Projection:
        """A projection that goes on from here without changing this one."""
        other = Projection()
        other.spec, other.usage, other.cost_usd = self.spec, self.usage, self.cost_usd
        other.guard, other.seq = self.guard, self.seq
        other.calls = {call_id: msgspec.structs.replace(c) for call_id, c in self.calls.items()}
        other.outcomes = self.outcomes.copy()
        other.threads = self.threads.copy()
        return other

    def call_for(self, tool_use_id: str) -> tuple[str, CallView] | None:
        for call_id, call in self.calls.items():
            if call.tool_use_id == tool_use_id:
                return call_id, call
        return None

    def project(self, record: Recorded) -> list[dict[str, Any]]:  # noqa: PLR0915
        self.seq = record.seq
        at = rfc3339(record.at)
        seq = record.seq
        match record.event:
            case SessionCreated(spec=spec, thread=origin):
                self.spec, self.threads.origin = spec, origin
                return []
            case (
                ThreadSpawned()
                | ThreadMessageSent()
                | ThreadMessageReceived()
                | ThreadReplied()
                | ThreadWaiting()
            ):
                out = [
                    self._event(seq, part, type_, at, **fields)
                    for part, type_, fields in self.threads.project(record.event)
                ]
                if isinstance(record.event, ThreadReplied):
                    # The reply carries what the thread spent: the session's usage grew.
                    out.append(self._usage_event(seq, len(out), at))
                return out
            case UserMessage(text=text):
                self.guard = None
                return [self._event(seq, 0, "user.message", at, content=text_of(text))]
            case UserInterrupt():
                return [self._event(seq, 0, "user.interrupt", at, **self.threads.own_id())]
            case OutcomeDefined() as defined:
                self.guard = None
                outcome = self.outcomes.defined(defined)
                return [self._event(seq, 0, "user.define_outcome", at, **outcome)]
            case OutcomeEvaluationStarted() as started:
                span = self.outcomes.started(started, self._id(seq, 0))
                return self._if(span, seq, "span.outcome_evaluation_start", at)
            case OutcomeEvaluationOngoing() as ongoing:
                return self._if(
                    self.outcomes.ongoing(ongoing), seq, "span.outcome_evaluation_ongoing", at
                )
            case OutcomeEvaluated() as evaluated:
                return self._evaluated(evaluated, seq, at)
            case ModelResponse():
                return self._response(record, at)
            case ApprovalRequested(call_id=call_id):
                if call := self.calls.get(call_id):
                    call.waiting_approval = True
                return []
            case ApprovalGranted(call_id=call_id) | ApprovalDenied(call_id=call_id):
                call = self.calls.get(call_id)
                if call is None:
                    return []
                call.waiting_approval = False
                denied = isinstance(record.event, ApprovalDenied)
                fields: dict[str, Any] = {
                    "tool_use_id": call.tool_use_id,
                    "result": "deny" if denied else "allow",
                }
                if denied and record.event.reason:
                    fields["deny_message"] = record.event.reason
                return [self._event(seq, 0, "user.tool_confirmation", at, **fields)]
            case ToolResult(call_id=call_id, output=output, is_error=is_error) as result:
                call = self.calls.pop(call_id, None)
                if call is None:
                    return []
                content = text_of(result.blob.preview if result.blob and not output else output)
                if not result.from_client:
                    return [
                        self._event(
                            seq,
                            0,
                            "agent.tool_result",
                            at,
                            tool_use_id=call.tool_use_id,
                            content=content,
                            is_error=is_error,
                        )
                    ]
                if self.spec.sandbox.backend == "self_hosted" and not self._is_custom(call.name):
                    kind, key = "user.tool_result", "tool_use_id"
                else:
                    kind, key = "user.custom_tool_result", "custom_tool_use_id"
                return [
                    self._event(
                        seq,
                        0,
                        kind,
                        at,
                        **{key: call.tool_use_id},
                        content=content,
                        is_error=is_error,
                    )
                ]
            case BudgetReached():
                self.guard = "budget_reached"
                return []
            case LoopDetected():
                self.guard = "retries_exhausted"
                return []
            case ContextCompacted() | IterationStarted() as replacing:
                return self._if(
                    _replaces_context(replacing), seq, "agent.thread_context_compacted", at
                )
            case SessionUpdated(title=title, metadata=metadata):
                fields = {}
                if title is not None:
                    fields["title"] = title
                if metadata is not None:
                    fields["metadata"] = metadata
                return [self._event(seq, 0, "session.updated", at, **fields)]
            case SessionStatus(status=status, reason=reason):
                return self._status(seq, at, status, reason)
            case _:
                return []

    def _evaluated(self, evaluated: OutcomeEvaluated, seq: int, at: str) -> list[dict[str, Any]]:
        """The end of an evaluation's span, and the session's usage with the grader's."""
        self.usage = self.usage + evaluated.usage
        self.cost_usd += evaluated.cost_usd
        end = self._if(
            self.outcomes.evaluated(evaluated, at), seq, "span.outcome_evaluation_end", at
        )
        if end:
            end.append(self._usage_event(seq, 1, at))
        return end

    def spend(self) -> tuple[Usage, float]:
        """What the log says was spent: its own model calls' and its threads' (the figure
        the brain's budgets count)."""
        threads_usage, threads_cost = self.threads.spend()
        return self.usage + threads_usage, self.cost_usd + threads_cost

    def _usage_event(self, seq: int, part: int, at: str) -> dict[str, Any]:
        return self._event(
            seq,
            part,
            "session.usage",
            at,
            usage=usage_view(*self.spend()),
            budget=budget_view(self.spec),
        )

    def _blocking(self) -> list[str]:
        """The tool uses the user must answer before the log's agent goes on."""
        return [
            call.tool_use_id
            for call in self.calls.values()
            if call.waiting_approval or call.on_client
        ]

    def _is_custom(self, name: str) -> bool:
        return any(tool.name == name for tool in self.spec.custom_tools)

    def _response(self, record: Recorded, at: str) -> list[dict[str, Any]]:
        response = record.event
        assert isinstance(response, ModelResponse)
        seq = record.seq
        started = rfc3339(record.at - response.duration_ms / 1000)
        out = [self._event(seq, START, "span.model_request_start", started)]
        text = [
            {"type": "text", "text": b.text} for b in response.content if isinstance(b, TextBlock)
        ]
        if text:
            out.append(self._event(seq, TEXT, "agent.message", at, content=text))
        uses = [b for b in response.content if isinstance(b, ToolUseBlock)]
        for i, use in enumerate(uses):
            tool_use_id = self._id(seq, FIRST_USE + i)
            on_client = self.spec.runs_on_client(use.name)
            self.calls[use.call_id] = CallView(
                tool_use_id=tool_use_id, name=use.name, on_client=on_client
            )
            if self._is_custom(use.name):
                out.append(
                    self._event(
                        seq,
                        FIRST_USE + i,
                        "agent.custom_tool_use",
                        at,
                        name=use.name,
                        input=use.input,
                    )
                )
                continue
            asks = self.spec.permissions.get(use.name, self.spec.default_permission) == "ask"
            out.append(
                self._event(
                    seq,
                    FIRST_USE + i,
                    "agent.tool_use",
                    at,
                    name=use.name,
                    input=use.input,
                    evaluated_permission="ask" if asks else "allow",
                    evaluation={"type": "always_ask" if asks else "always_allow"},
                )
            )
        self.usage = self.usage + response.usage
        self.cost_usd += response.cost_usd
        end = FIRST_USE + len(uses)
        usage = response.usage
        out.append(
            self._event(
                seq,
                end,
                "span.model_request_end",
                at,
                model_request_start_id=self._id(seq, START),
                model_usage=span_usage(usage),
                is_error=False,
            )
        )
        out.append(self._usage_event(seq, end + 1, at))
        return out

    def _status(self, seq: int, at: str, status: str, reason: str) -> list[dict[str, Any]]:
        waits_on_user = status == "waiting" and reason in (WAITING_FOR_APPROVAL, WAITING_FOR_CLIENT)
        if self.threads.origin is not None:
            parts = (
                self.threads.own_wait(self._blocking())
                if waits_on_user
                else self.threads.own_status(status, self.guard)
            )
            return [self._event(seq, part, type_, at, **fields) for part, type_, fields in parts]
        match status:
            case "running":
                return [self._event(seq, 0, "session.status_running", at)]
            case "waiting" if waits_on_user:
                stop = {"type": "requires_action", "event_ids": self._blocking()}
                return [self._event(seq, 0, "session.status_idle", at, stop_reason=stop)]
            case "idle" | "paused" | "completed":
                stop = {"type": self.guard or "end_turn"}
                return [self._event(seq, 0, "session.status_idle", at, stop_reason=stop)]
            case "failed":
                error = {
                    "type": "unknown_error",
                    "message": reason,
                    "retry_status": {"type": "terminal"},
                }
                return [
                    self._event(seq, 0, "session.error", at, error=error),
                    self._event(seq, 1, "session.status_terminated", at),
                ]
            case "cancelled":
                return [self._event(seq, 0, "session.status_terminated", at)]
            case _:
                return []

    def _id(self, seq: int, part: int) -> str:
        return event_id(seq, part, self.threads.own_thread_id())

    def _event(
        self, seq: int, part: int, type_: str, processed_at: str, **fields: Any
    ) -> dict[str, Any]:
        here = self._id(seq, part)
        event = {"id": here, "type": type_, "processed_at": processed_at, **fields}
        # An event of another log (`fields` name its id) stands here on this one.
        return event if event["id"] == here else CrossPosted(event, position=here)

    def _if(
        self, fields: dict[str, Any] | None, seq: int, type_: str, at: str
    ) -> list[dict[str, Any]]:
        """The one event of a keel event with these `fields`; none when there are none."""
        return [] if fields is None else [self._event(seq, 0, type_, at, **fields)]


def _replaces_context(event: ContextCompacted | IterationStarted) -> dict[str, Any] | None:
    """The fields of `agent.thread_context_compacted` when the event replaced the context (a
    compaction; a context reset, keel_context_resets, from its second iteration on), else
    None."""
    return {} if not isinstance(event, IterationStarted) or event.iteration > 1 else None
