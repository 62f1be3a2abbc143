"""The spans of a log: a pure projection, checked on the golden logs and on built ones."""

from __future__ import annotations

import pytest

from brain import fold, initial_state
from schemas import (
    WAITING_FOR_APPROVAL,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    BudgetReached,
    ContextCompacted,
    ModelResponse,
    OutcomeDefined,
    OutcomeEvaluated,
    OutcomeEvaluationStarted,
    Recorded,
    SessionCreated,
    SessionStatus,
    TextBlock,
    ThreadOrigin,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    Usage,
    UserMessage,
)
from tests.golden.golden import names, read_log
from tests.traces.logs import LogBuilder, created
from traces import Span, project, unix_ns


def _by_name(spans: list[Span], prefix: str) -> list[Span]:
    return [span for span in spans if span.name.startswith(prefix)]


def _tokens(spans: list[Span]) -> tuple[int, int]:
    return (
        sum(int(s.attributes.get("gen_ai.usage.input_tokens", 0)) for s in spans),
        sum(int(s.attributes.get("gen_ai.usage.output_tokens", 0)) for s in spans),
    )


@pytest.mark.parametrize("name", names())
def test_a_golden_log_projects_to_one_closed_tree_per_turn(name: str) -> None:
    log = read_log(name)
    spans = project(name, log)
    assert spans == project(name, read_log(name))  # the same log, the same spans
    ids = [span.span_id for span in spans]
    assert len(ids) == len(set(ids))
    by_id = {span.span_id: span for span in spans}
    for span in spans:
        assert len(span.trace_id) == 32 and len(span.span_id) == 16
        assert span.start_ns <= span.end_ns
        if span.parent_span_id is not None:  # every parent is in the set, in the same trace
            assert by_id[span.parent_span_id].trace_id == span.trace_id
    responses = [r for r in log if isinstance(r.event, ModelResponse)]
    results = {r.event.call_id for r in log if isinstance(r.event, ToolResult)}
    assert len(_by_name(spans, "chat ")) == len(responses)
    assert {s.attributes["gen_ai.tool.call.id"] for s in _by_name(spans, "execute_tool")} == (
        results
    )
    state = initial_state(name)
    for recorded in log:
        fold(state, recorded)
    assert _tokens(spans) == (state.usage.input_tokens, state.usage.output_tokens)


def test_a_model_call_carries_the_genai_attributes() -> None:
    log = LogBuilder()
    log.add(created())
    log.add(UserMessage(text="hi"))
    log.add(SessionStatus(status="running"))
    [response] = log.add(
        ModelResponse(
            content=[TextBlock(text="hello")],
            stop_reason="end_turn",
            usage=Usage(input_tokens=120, output_tokens=30, cache_read_tokens=7),
            cost_usd=0.01,
            model="claude-test-2026",
            duration_ms=1500.0,
            context_seq=3,
        )
    )
    log.add(SessionStatus(status="completed", reason="the model ended its turn"))
    chat, turn = project("ses_1", log.records)
    assert chat.name == "chat claude-test" and chat.kind == "client"
    assert chat.parent_span_id == turn.span_id and chat.trace_id == turn.trace_id
    assert chat.end_ns == unix_ns(response.at) and chat.end_ns - chat.start_ns == 1_500_000_000
    assert chat.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.system": "anthropic",
        "gen_ai.conversation.id": "ses_1",
        "gen_ai.request.model": "claude-test",
        "gen_ai.request.max_tokens": 4096,
        "gen_ai.response.model": "claude-test-2026",
        "gen_ai.response.finish_reasons": ["end_turn"],
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.usage.cache_read.input_tokens": 7,
        "keel.cost_usd": 0.01,
        "keel.seq": 4,
        "keel.context_seq": 3,
    }
    assert turn.name == "invoke_agent fix add" and turn.parent_span_id is None
    assert turn.start_ns == unix_ns(log.records[1].at)  # from the user's message
    assert turn.attributes["keel.turn.status"] == "completed"
    assert turn.attributes["keel.usage.input_tokens"] == 120
    assert "gen_ai.usage.input_tokens" not in turn.attributes  # counted once, on the call


def test_each_input_after_a_rest_opens_a_new_trace() -> None:
    log = LogBuilder()
    log.add(created())
    for text in ("one", "two"):
        log.add(UserMessage(text=text))
        log.add(SessionStatus(status="running"))
        log.add(ModelResponse(content=[TextBlock(text=text)], stop_reason="end_turn"))
        log.add(SessionStatus(status="idle", reason="end_turn"))
    spans = project("ses_1", log.records)
    turns = _by_name(spans, "invoke_agent")
    assert [t.attributes["keel.turn.first_seq"] for t in turns] == [2, 6]
    assert len({t.trace_id for t in turns}) == 2
    for turn in turns:
        [chat] = [s for s in spans if s.parent_span_id == turn.span_id]
        assert chat.trace_id == turn.trace_id


def test_waiting_on_an_approval_is_in_the_turn_and_has_its_own_span() -> None:
    log = LogBuilder()
    log.add(created())
    log.add(UserMessage(text="deploy"))
    log.add(SessionStatus(status="running"))
    log.add(
        ModelResponse(content=[TextBlock(text="ok")], stop_reason="tool_use"),
        ToolRequested(call_id="c1", name="bash", input={"command": "make deploy"}),
        ToolRequested(call_id="c2", name="bash", input={"command": "rm -rf /"}),
    )
    log.add(
        ApprovalRequested(call_id="c1", expires_at=1.0),
        ApprovalRequested(call_id="c2", expires_at=1.0),
    )
    log.add(SessionStatus(status="waiting", reason=WAITING_FOR_APPROVAL))
    [granted] = log.add(ApprovalGranted(call_id="c1", by="alice"))
    log.add(ApprovalDenied(call_id="c2", by="bob"))
    log.add(SessionStatus(status="running"))
    [refused] = log.add(ToolResult(call_id="c2", output="denied", is_error=True, outcome="error"))
    [dispatched] = log.add(ToolDispatched(call_id="c1", attempt=1, sandbox_id="sbx_1"))
    log.add(ToolDispatched(call_id="c1", attempt=2, sandbox_id="sbx_2"))
    [result] = log.add(ToolResult(call_id="c1", output="deployed", duration_ms=12.5))
    log.add(ModelResponse(content=[TextBlock(text="done")], stop_reason="end_turn"))
    log.add(SessionStatus(status="completed"))
    spans = project("ses_1", log.records)
    [turn] = _by_name(spans, "invoke_agent")
    assert all(span.trace_id == turn.trace_id for span in spans)  # one turn throughout
    approvals = {s.attributes["keel.tool.call_id"]: s for s in _by_name(spans, "await_approval")}
    assert approvals["c1"].attributes["keel.approval.decision"] == "granted"
    assert approvals["c1"].attributes["keel.approval.by"] == "alice"
    assert approvals["c1"].end_ns == unix_ns(granted.at)
    assert approvals["c2"].attributes["keel.approval.decision"] == "denied"
    tools = {s.attributes["gen_ai.tool.call.id"]: s for s in _by_name(spans, "execute_tool")}
    deployed = tools["c1"]
    assert deployed.start_ns == unix_ns(dispatched.at) and deployed.end_ns == unix_ns(result.at)
    assert deployed.attributes["keel.tool.attempt"] == 2
    assert deployed.attributes["keel.sandbox.id"] == "sbx_2"
    assert deployed.attributes["keel.tool.outcome"] == "ok"
    assert [e.attributes["keel.sandbox.id"] for e in deployed.events] == ["sbx_1", "sbx_2"]
    never_ran = tools["c2"]  # refused: from its request to its outcome, an error
    assert never_ran.end_ns == unix_ns(refused.at) and never_ran.status == "error"
    assert never_ran.attributes["error.type"] == "tool_error"


def test_a_call_that_ends_after_its_turn_stays_in_that_turn_trace() -> None:
    log = LogBuilder()
    log.add(created())
    log.add(UserMessage(text="go"))
    log.add(SessionStatus(status="running"))
    log.add(
        ModelResponse(content=[], stop_reason="tool_use"),
        ToolRequested(call_id="c1", name="bash"),
    )
    log.add(ToolDispatched(call_id="c1", sandbox_id="sbx_1"))
    log.add(SessionStatus(status="cancelled", reason="cancelled by the user"))
    log.add(ToolResult(call_id="c1", is_error=True, outcome="unknown", sandbox_lost=True))
    spans = project("ses_1", log.records)
    [turn] = _by_name(spans, "invoke_agent")
    [tool] = _by_name(spans, "execute_tool")
    assert (tool.trace_id, tool.parent_span_id) == (turn.trace_id, turn.span_id)
    assert tool.end_ns > turn.end_ns
    assert tool.attributes["keel.tool.outcome"] == "unknown"
    assert tool.attributes["error.type"] == "unknown"


def test_outcome_evaluations_compactions_and_guards() -> None:
    log = LogBuilder()
    log.add(created())
    log.add(OutcomeDefined(outcome_id="out_1", description="a report", rubric="has a title"))
    log.add(SessionStatus(status="running"))
    log.add(ModelResponse(content=[], stop_reason="end_turn", usage=Usage(input_tokens=10)))
    [compacted] = log.add(
        ContextCompacted(
            up_to_seq=3,
            summary="so far",
            tokens_before=900,
            tokens_after=100,
            strategy="summary",
            usage=Usage(input_tokens=800, output_tokens=60),
            model="claude-summarizer",
        )
    )
    [started] = log.add(OutcomeEvaluationStarted(outcome_id="out_1", iteration=0))
    [evaluated] = log.add(
        OutcomeEvaluated(
            outcome_id="out_1",
            iteration=0,
            result="failed",
            explanation="the grader's model is down",
            usage=Usage(input_tokens=40, output_tokens=5),
            model="claude-grader",
        )
    )
    [budget] = log.add(BudgetReached(budget="tokens", limit=50, used=55))
    log.add(SessionStatus(status="paused", reason="the tokens budget is reached"))
    spans = project("ses_1", log.records)
    [turn] = _by_name(spans, "invoke_agent fix")
    [grader] = _by_name(spans, "invoke_agent grader")
    assert (grader.start_ns, grader.end_ns) == (unix_ns(started.at), unix_ns(evaluated.at))
    assert grader.status == "error" and grader.status_message == "the grader's model is down"
    assert grader.attributes["gen_ai.usage.input_tokens"] == 40
    assert grader.attributes["keel.outcome.result"] == "failed"
    [compaction] = _by_name(spans, "compact_context")
    assert compaction.start_ns == compaction.end_ns == unix_ns(compacted.at)
    assert compaction.attributes["keel.compaction.tokens_before"] == 900
    assert compaction.attributes["keel.compaction.strategy"] == "summary"
    assert compaction.attributes["gen_ai.response.model"] == "claude-summarizer"
    assert _tokens(spans) == (850, 65)
    assert turn.attributes["keel.usage.input_tokens"] == 850
    assert turn.attributes["keel.turn.status"] == "paused"
    [note] = turn.events
    assert (note.name, note.time_ns) == ("budget.reached", unix_ns(budget.at))
    assert note.attributes == {"keel.budget": "tokens", "keel.limit": 50.0, "keel.used": 55.0}


def test_a_failed_session_fails_its_turn_and_an_open_turn_is_not_a_span() -> None:
    log = LogBuilder()
    log.add(created())
    log.add(UserMessage(text="go"))
    log.add(SessionStatus(status="running"))
    log.add(SessionStatus(status="failed", reason="the model is gone"))
    log.add(UserMessage(text="again"))
    [turn] = project("ses_1", log.records)
    assert turn.status == "error" and turn.status_message == "the model is gone"


def test_ids_depend_on_the_session_and_the_log_position_only() -> None:
    log = LogBuilder()
    log.add(created())
    log.add(UserMessage(text="go"))
    log.add(SessionStatus(status="running"))
    log.add(ModelResponse(content=[], stop_reason="end_turn"))
    log.add(SessionStatus(status="completed"))
    later = LogBuilder(start=1_900_000_000.0, step_s=3.0)
    for recorded in log.records:
        later.add(recorded.event)
    ids = [(s.trace_id, s.span_id) for s in project("ses_1", log.records)]
    assert ids == [(s.trace_id, s.span_id) for s in project("ses_1", later.records)]
    assert ids != [(s.trace_id, s.span_id) for s in project("ses_2", log.records)]


def test_events_seen_twice_are_fed_once() -> None:
    log = read_log("coding")
    doubled: list[Recorded] = [r for recorded in log for r in (recorded, recorded)]
    assert project("coding", doubled) == project("coding", log)


def test_a_thread_s_spans_are_its_session_s_conversation_and_name_the_spawning_call() -> None:
    parent = LogBuilder()
    parent.add(created("lead"))
    parent.add(UserMessage(text="go"), SessionStatus(status="running"))
    parent.add(ToolRequested(call_id="call-spawn", name="spawn_thread", input={}))
    parent.add(ToolResult(call_id="call-spawn", output="done"))
    parent.add(SessionStatus(status="idle", reason="end_turn"))
    [spawn] = _by_name(project("ses_root", parent.records), "execute_tool")

    origin = ThreadOrigin(
        parent_session_id="ses_root",
        call_id="call-spawn",
        agent_name="worker",
        root_session_id="ses_root",
        thread_id="sthr_1",
    )
    thread = LogBuilder()
    thread.add(SessionCreated(spec=created().spec, title="worker", thread=origin))
    thread.add(SessionStatus(status="running"))
    usage = Usage(input_tokens=7, output_tokens=3)
    thread.add(ModelResponse(content=[TextBlock(text="ok")], stop_reason="end_turn", usage=usage))
    thread.add(SessionStatus(status="idle", reason="end_turn"))
    spans = project("sthr_1", thread.records)
    [turn] = _by_name(spans, "invoke_agent")
    assert {s.attributes["gen_ai.conversation.id"] for s in spans} == {"ses_root"}
    assert turn.attributes["keel.session.id"] == "sthr_1"
    assert turn.attributes["keel.thread.parent_session_id"] == "ses_root"
    assert turn.attributes["keel.thread.call_span_id"] == spawn.span_id
    assert turn.attributes["keel.thread.agent_name"] == "worker"
    assert _tokens(spans) == (7, 3)
