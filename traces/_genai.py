"""Each kind of keel span as the OpenTelemetry GenAI semantic conventions name it: its
name, kind, `gen_ai.*` attributes (keel's own under `keel.*`) and status.

Token usage goes on model calls, grader evaluations and compactions only (`gen_ai.usage.*`),
the three places a session's usage grows, so a receiver that adds up a session's spans finds keel's
totals; a turn's totals are `keel.usage.*`.
"""

from __future__ import annotations

from schemas import ContextCompacted, ModelResponse, OutcomeEvaluated, ToolResult, Usage
from traces._ids import span_id
from traces._open import Agent, OpenApproval, OpenCall, OpenEvaluation, OpenTurn, Place
from traces._spans import AttributeValue, Span


def usage_attributes(usage: Usage) -> dict[str, AttributeValue]:
    """The conventions' usage attributes (cache counts only when there are some)."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
    }
    if usage.cache_read_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
    return attributes


def thread_attributes(agent: Agent) -> dict[str, AttributeValue]:
    """What a thread's turn says of where it came from: its own session, the one whose call
    spawned it, that call and its span (the parent's `execute_tool` span, whose id is known
    from the call id alone; its trace is the parent's turn, which the thread's log does not
    name, so the span is named here rather than linked)."""
    origin = agent.thread
    if origin is None:
        return {}
    return {
        "keel.session.id": agent.session_id,
        "keel.thread.parent_session_id": origin.parent_session_id,
        "keel.thread.call_id": origin.call_id,
        "keel.thread.call_span_id": span_id(origin.parent_session_id, "tool", origin.call_id),
        "keel.thread.agent_name": origin.agent_name,
    }


def turn_span(
    agent: Agent, turn: OpenTurn, last_seq: int, end_ns: int, status: str, reason: str
) -> Span:
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.conversation.id": agent.conversation_id,
        **({"gen_ai.agent.name": agent.title} if agent.title else {}),
        **({"gen_ai.agent.id": agent.agent_id} if agent.agent_id else {}),
        "gen_ai.provider.name": agent.model.provider,
        "gen_ai.request.model": agent.model.name,
        "keel.turn.first_seq": turn.first_seq,
        "keel.turn.last_seq": last_seq,
        "keel.turn.status": status,
        "keel.turn.reason": reason,
        "keel.turn.model_calls": turn.model_calls,
        "keel.turn.tool_calls": turn.tool_calls,
        "keel.usage.input_tokens": turn.usage.input_tokens,
        "keel.usage.output_tokens": turn.usage.output_tokens,
        "keel.cost_usd": turn.cost_usd,
        **thread_attributes(agent),
    }
    failed = status == "failed"
    return Span(
        trace_id=turn.trace_id,
        span_id=turn.span_id,
        parent_span_id=None,
        name=f"invoke_agent {agent.title}" if agent.title else "invoke_agent",
        kind="internal",
        start_ns=turn.start_ns,
        end_ns=end_ns,
        attributes=attributes,
        events=turn.events,
        status="error" if failed else "unset",
        status_message=reason if failed else "",
    )


def model_call_span(
    agent: Agent, place: Place, response: ModelResponse, seq: int, end_ns: int
) -> Span:
    model = agent.model
    temperature = (
        {} if model.temperature is None else {"gen_ai.request.temperature": model.temperature}
    )
    return Span(
        trace_id=place.trace_id,
        span_id=span_id(agent.session_id, "model", str(seq)),
        parent_span_id=place.parent_span_id,
        name=f"chat {model.name}",
        kind="client",
        start_ns=end_ns - round(response.duration_ms * 1e6),
        end_ns=end_ns,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": model.provider,
            "gen_ai.system": model.provider,
            "gen_ai.conversation.id": agent.conversation_id,
            "gen_ai.request.model": model.name,
            "gen_ai.request.max_tokens": model.max_output_tokens,
            **temperature,
            "gen_ai.response.model": response.model,
            "gen_ai.response.finish_reasons": [response.stop_reason],
            **usage_attributes(response.usage),
            "keel.cost_usd": response.cost_usd,
            "keel.seq": seq,
            "keel.context_seq": response.context_seq,
        },
        status="error" if response.stop_reason == "error" else "unset",
    )


def tool_span(agent: Agent, call_id: str, call: OpenCall, result: ToolResult, end_ns: int) -> Span:
    """From its first dispatch (its request, if it never was) to its one outcome."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.conversation.id": agent.conversation_id,
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
        span_id=span_id(agent.session_id, "tool", call_id),
        parent_span_id=call.place.parent_span_id,
        name=f"execute_tool {call.name}",
        kind="internal",
        start_ns=call.requested_ns if call.dispatched_ns is None else call.dispatched_ns,
        end_ns=end_ns,
        attributes=attributes,
        events=call.dispatches,
        status="error" if result.is_error else "unset",
    )


def approval_span(
    agent: Agent, call_id: str, approval: OpenApproval, end_ns: int, decision: str, by: str
) -> Span:
    return Span(
        trace_id=approval.place.trace_id,
        span_id=approval.span_id,
        parent_span_id=approval.place.parent_span_id,
        name=f"await_approval {approval.tool}",
        kind="internal",
        start_ns=approval.start_ns,
        end_ns=end_ns,
        attributes={
            "gen_ai.conversation.id": agent.conversation_id,
            "keel.tool.name": approval.tool,
            "keel.tool.call_id": call_id,
            "keel.approval.decision": decision,
            "keel.approval.by": by,
            "keel.approval.expires_at": approval.expires_at,
        },
    )


def evaluation_span(
    agent: Agent, started: OpenEvaluation, evaluated: OutcomeEvaluated, end_ns: int
) -> Span:
    """The grader, a separate agent: its own tokens."""
    failed = evaluated.result == "failed"
    return Span(
        trace_id=started.place.trace_id,
        span_id=started.span_id,
        parent_span_id=started.place.parent_span_id,
        name="invoke_agent grader",
        kind="internal",
        start_ns=started.start_ns,
        end_ns=end_ns,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "grader",
            "gen_ai.conversation.id": agent.conversation_id,
            "gen_ai.response.model": evaluated.model,
            **usage_attributes(evaluated.usage),
            "keel.cost_usd": evaluated.cost_usd,
            "keel.outcome.id": evaluated.outcome_id,
            "keel.outcome.iteration": evaluated.iteration,
            "keel.outcome.result": evaluated.result,
        },
        status="error" if failed else "unset",
        status_message=evaluated.explanation if failed else "",
    )


def compaction_span(
    agent: Agent, place: Place, compacted: ContextCompacted, seq: int, at: int
) -> Span:
    """At its event, of no length: the log records no duration for it. A summary a model
    wrote is that model's spend (`gen_ai.usage.*`, zero for a handoff)."""
    return Span(
        trace_id=place.trace_id,
        span_id=span_id(agent.session_id, "compaction", str(seq)),
        parent_span_id=place.parent_span_id,
        name="compact_context",
        kind="internal",
        start_ns=at,
        end_ns=at,
        attributes={
            "gen_ai.conversation.id": agent.conversation_id,
            **({"gen_ai.response.model": compacted.model} if compacted.model else {}),
            **usage_attributes(compacted.usage),
            "keel.cost_usd": compacted.cost_usd,
            "keel.compaction.strategy": compacted.strategy,
            "keel.compaction.up_to_seq": compacted.up_to_seq,
            "keel.compaction.tokens_before": compacted.tokens_before,
            "keel.compaction.tokens_after": compacted.tokens_after,
        },
    )
