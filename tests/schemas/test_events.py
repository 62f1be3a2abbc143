from __future__ import annotations

import msgspec
import pytest

from hands import executor
from schemas import (
    DEFAULT_PROTECTED_TESTS,
    EVENT_CLASSES,
    EVENT_TYPES,
    ID_PATTERN,
    AgentSpec,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    BlobRef,
    BudgetReached,
    Budgets,
    CompletionCondition,
    ContextCompacted,
    Event,
    HandoffFile,
    IterationEnded,
    IterationStarted,
    JudgeVerdict,
    LoopDetected,
    ManagedOrigin,
    ModelResponse,
    ModelSpec,
    OutcomeDefined,
    OutcomeEvaluated,
    OutcomeEvaluationOngoing,
    OutcomeEvaluationStarted,
    ProtectedFile,
    ProtectedFileChange,
    SandboxSpec,
    SessionArchived,
    SessionCreated,
    SessionForked,
    SessionStatus,
    SessionUpdated,
    TextBlock,
    ThreadMessageReceived,
    ThreadMessageSent,
    ThreadReplied,
    ThreadSpawned,
    ThreadWaiting,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    ToolUseBlock,
    UnknownEvent,
    Usage,
    UserInterrupt,
    UserMessage,
    WaitingCall,
    WorkspaceChecked,
    WorkspaceRestored,
    decode_event,
    encode_event,
    event_type,
    is_valid_id,
    new_id,
)

ONE_OF_EACH: list[Event] = [
    SessionCreated(
        spec=AgentSpec(
            model=ModelSpec(provider="anthropic", name="claude-sonnet-4-5"),
            system_prompt="You fix bugs.",
            tools=["bash", "read_file"],
            permissions={"bash": "ask"},
            budgets=Budgets(max_tokens=100_000, max_cost_usd=2.5, max_turns=40),
            completion=CompletionCondition(kind="command", command="pytest -q"),
            sandbox=SandboxSpec(backend="docker", network=False, memory_mb=512),
        ),
        title="fix the tests",
        managed=ManagedOrigin(agent_id="agent_1", agent_version=2, environment_id="env_1"),
    ),
    SessionUpdated(title="fix the flaky tests", metadata={"team": "infra"}),
    SessionArchived(),
    UserMessage(text="the tests fail", message_id="m1"),
    UserInterrupt(reason="stop"),
    ModelResponse(
        content=[
            TextBlock(text="Let me look."),
            ToolUseBlock(call_id="c1", name="bash", input={"command": "pytest -q"}),
        ],
        stop_reason="tool_use",
        usage=Usage(input_tokens=1200, output_tokens=40),
        cost_usd=0.0042,
        model="claude-sonnet-4-5",
        duration_ms=812.5,
    ),
    ToolRequested(call_id="c1", name="bash", input={"command": "pytest -q"}),
    ApprovalRequested(call_id="c1", expires_at=1_800_000_000.0, reason="bash asks"),
    ApprovalGranted(call_id="c1", by="alice"),
    ApprovalDenied(call_id="c2", by="bob", reason="no"),
    ApprovalExpired(call_id="c3"),
    ToolDispatched(call_id="c1", attempt=1, sandbox_id="sbx_1"),
    ToolResult(
        call_id="c1",
        output="1 failed",
        blob=BlobRef(digest="ab" * 32, size=10_000, preview="1 failed"),
        is_error=True,
        outcome="error",
        duration_ms=2100.0,
        checkpoint="cd" * 32,
    ),
    OutcomeDefined(
        outcome_id="outc_1", description="a haiku", rubric="has `three` lines", max_iterations=2
    ),
    OutcomeEvaluationStarted(outcome_id="outc_1", iteration=0),
    OutcomeEvaluationOngoing(outcome_id="outc_1", iteration=0),
    OutcomeEvaluated(
        outcome_id="outc_1",
        iteration=0,
        result="needs_revision",
        explanation="two lines only",
        usage=Usage(input_tokens=300, output_tokens=20),
        cost_usd=0.0012,
        model="claude-haiku-4-5",
    ),
    JudgeVerdict(passed=True, judge="command", detail="exit 0"),
    BudgetReached(budget="cost", limit=2.5, used=2.51),
    LoopDetected(signature="bash:abc", repeats=5, reason="same call 5 times"),
    ContextCompacted(up_to_seq=40, summary="fixed two tests", tokens_before=90_000),
    IterationStarted(
        iteration=2,
        handoff=[
            HandoffFile(path="PLAN.md", text="1. add", digest="ef" * 32, size=6),
            HandoffFile(path="PROGRESS.md"),
        ],
        protected=[
            ProtectedFile(path="tests/test_a.py", digest="01" * 32, content=b"assert 1\n"),
            ProtectedFile(path="tests/test_b.py", digest="02" * 32),
        ],
    ),
    IterationEnded(iteration=2, reason="goal_not_met", detail="needs revision"),
    WorkspaceChecked(
        iteration=2,
        changes=[
            ProtectedFileChange(path="tests/test_a.py", change="modified", digest="03" * 32),
            ProtectedFileChange(path="tests/test_b.py", change="deleted"),
        ],
    ),
    WorkspaceRestored(
        iteration=2, paths=["tests/test_a.py"], unrestorable=["tests/test_b.py"], checkpoint="x"
    ),
    SessionStatus(status="completed", reason="judge passed"),
    SessionForked(parent_session_id="ses_parent", at_seq=12),
    ThreadSpawned(call_id="c1", thread_id="sthr_1", agent_name="worker", task="Fix add()."),
    ThreadMessageSent(call_id="c2", thread_id="sthr_1", text="And sub()?", agent_name="worker"),
    ThreadMessageReceived(from_session_id="ses_parent", call_id="c2", text="And sub()?"),
    ThreadReplied(
        call_id="c2", thread_id="sthr_1", status="idle", usage=Usage(input_tokens=5), turns=2
    ),
    ThreadWaiting(
        thread_id="sthr_1",
        agent_name="worker",
        calls=[
            WaitingCall(
                call_id="c3",
                name="lookup",
                input={"word": "keel"},
                response_seq=9,
                use_index=0,
                waits_for="custom",
            )
        ],
    ),
]


def test_the_sample_covers_every_event_type() -> None:
    assert {event_type(e) for e in ONE_OF_EACH} == EVENT_TYPES
    assert len(EVENT_CLASSES) == len(EVENT_TYPES)


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=event_type)
def test_every_event_round_trips(event: Event) -> None:
    data = encode_event(event)
    assert msgspec.json.decode(data)["type"] == event_type(event)
    assert decode_event(event_type(event), data) == event
    assert decode_event(event_type(event), data.decode()) == event


def test_unknown_fields_are_ignored() -> None:
    """A newer writer may add fields; an older reader still decodes the event. Logs written
    before events lost their unread `v` field still decode too."""
    data = b'{"type": "user.message", "v": 2, "text": "hi", "attachments": [1, 2]}'
    assert decode_event("user.message", data) == UserMessage(text="hi")


def test_unknown_types_are_kept_raw() -> None:
    assert decode_event("agent.dreamed", '{"x": 1}') == UnknownEvent(
        type="agent.dreamed", data='{"x": 1}'
    )


def test_undecodable_data_of_a_known_type_is_kept_raw() -> None:
    decoded = decode_event("user.message", b'{"type": "user.message", "text": 42}')
    assert isinstance(decoded, UnknownEvent) and decoded.type == "user.message"
    assert "text" in decoded.error
    assert isinstance(decode_event("user.message", b"not json"), UnknownEvent)


def test_events_are_immutable() -> None:
    with pytest.raises(AttributeError):
        UserMessage(text="a").text = "b"  # type: ignore[misc]


def test_defaults_keep_stored_specs_small() -> None:
    assert encode_event(SessionCreated(spec=AgentSpec())) == (
        b'{"type":"session.created","spec":{}}'
    )


def test_ids_are_time_ordered() -> None:
    earlier = new_id("ses", now=1_000.0)
    later = new_id("ses", now=1_000.001)
    assert earlier < later and earlier.startswith("ses_") and len(earlier) == 32


def test_an_id_is_matched_whole() -> None:
    assert is_valid_id("ses_01a2:t1:0") and is_valid_id("x" * 64)
    for bad in ("ses_x\n", "ses x", "", "x" * 65, "ses_x\r", "a/b", "ses_é"):
        assert not is_valid_id(bad), repr(bad)


def test_the_sandbox_executor_matches_ids_as_keel_does() -> None:
    """The executor runs without keel's packages, so it keeps its own copy of the pattern."""
    assert executor.ID_PATTERN.pattern == ID_PATTERN.pattern


def test_a_models_key_variable_is_kept_left_out_when_unset_and_must_be_a_name() -> None:
    routed = SessionCreated(spec=AgentSpec(model=ModelSpec(provider="openai", api_key_env="K_1")))
    assert decode_event("session.created", encode_event(routed)) == routed
    # Unset, it is not written: a log from before the field encodes byte for byte the same.
    assert b"api_key_env" not in encode_event(SessionCreated(spec=AgentSpec()))
    with pytest.raises(msgspec.ValidationError, match="api_key_env"):
        msgspec.json.decode(b'{"api_key_env": "MY KEY"}', type=ModelSpec)


def test_context_resets_take_only_workspace_paths_as_handoff_files() -> None:
    resets = {"handoff_files": ["PLAN.md", "docs/TASKS.md"]}
    spec = msgspec.convert({"tools": ["bash"], "context_resets": resets}, AgentSpec)
    assert spec.context_resets is not None and spec.context_resets.ratchet
    assert spec.context_resets.protected_tests == list(DEFAULT_PROTECTED_TESTS)
    for bad in (
        {"tools": ["bash"], "context_resets": {"handoff_files": ["/etc/passwd"]}},
        {"tools": ["bash"], "context_resets": {"handoff_files": ["../PLAN.md"]}},
        {"tools": ["bash"], "context_resets": {"handoff_files": ["a/../../b"]}},
        {"tools": ["bash"], "context_resets": {"handoff_files": [f"f{i}" for i in range(9)]}},
        {"tools": ["bash"], "context_resets": {"handoff_files": ["docs//PLAN.md"]}},
        {"tools": ["bash"], "context_resets": {"max_turns": 0}},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, AgentSpec)
    assert spec.has_sandbox()
    assert not msgspec.convert(
        {"tools": ["bash"], "sandbox": {"backend": "self_hosted"}}, AgentSpec
    ).has_sandbox()
    assert not AgentSpec().has_sandbox()
    allowing = msgspec.convert(
        {"tools": ["bash"], "context_resets": {"allow_test_edits": True}}, AgentSpec
    )
    assert allowing.context_resets is not None and not allowing.context_resets.ratchet
