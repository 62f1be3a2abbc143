"""The outcome grader's request and how its answer is read: pure, no I/O."""

from __future__ import annotations

import pytest

from brain import initial_state, replay
from brain.grader import WORK_CHARS, evaluation, grader_request
from brain.state import DefinedOutcome, SessionState
from schemas import (
    AgentSpec,
    CompletionCondition,
    Event,
    ModelResponse,
    ModelSpec,
    OutcomeDefined,
    OutcomeResult,
    Recorded,
    SessionCreated,
    TextBlock,
    ToolRequested,
    ToolResult,
    ToolUseBlock,
    Usage,
    UserMessage,
    event_type,
)

WORKER = ModelSpec(provider="anthropic", name="claude-sonnet-4-5")


def state_of(*events: Event, spec: AgentSpec | None = None) -> SessionState:
    log = [
        SessionCreated(spec=spec or AgentSpec(model=WORKER, system_prompt="Be a poet.")),
        *events,
    ]
    recorded = [
        Recorded(seq=seq, at=1_000.0 + seq, type=event_type(e), event=e)
        for seq, e in enumerate(log, 1)
    ]
    return replay(recorded, initial_state("ses_g"))


def outcome_of(state: SessionState) -> DefinedOutcome:
    assert state.outcome is not None
    return state.outcome


DEFINED = OutcomeDefined(
    outcome_id="outc_1", description="Write a haiku.", rubric="Mentions the `moon`."
)


def test_the_grader_sees_the_task_the_rubric_and_the_work_since_not_the_workers_prompt() -> None:
    state = state_of(
        UserMessage(text="earlier chat"),
        ModelResponse(content=[TextBlock(text="earlier answer")], stop_reason="end_turn"),
        DEFINED,
        ModelResponse(
            content=[
                TextBlock(text="Let me check the notes."),
                ToolUseBlock(call_id="c1", name="read", input={"file_path": "notes"}),
            ],
            stop_reason="tool_use",
        ),
        ToolRequested(call_id="c1", name="read"),
        ToolResult(call_id="c1", output="the moon is bright"),
        ModelResponse(content=[TextBlock(text="moon over water")], stop_reason="end_turn"),
    )
    request = grader_request(state, outcome_of(state))
    assert request.model == WORKER and request.tools == []
    assert "Be a poet" not in request.context.system
    [prompt] = request.context.messages
    text = prompt.content[0].text  # type: ignore[union-attr]
    assert "Write a haiku." in text and "Mentions the `moon`." in text
    assert "earlier" not in text
    assert '[agent called read] {"file_path":"notes"}' in text
    assert "[tool result] the moon is bright" in text
    assert request.grading is not None
    assert (request.grading.rubric, request.grading.last_message) == (
        "Mentions the `moon`.",
        "moon over water",
    )


def test_the_grader_has_the_judge_model_when_the_spec_names_one_and_the_end_of_long_work() -> None:
    judge = ModelSpec(provider="anthropic", name="claude-haiku-4-5")
    spec = AgentSpec(model=WORKER, completion=CompletionCondition(kind="judge", judge_model=judge))
    long = "x" * (WORK_CHARS + 10) + " the end"
    state = state_of(
        DEFINED, ModelResponse(content=[TextBlock(text=long)], stop_reason="end_turn"), spec=spec
    )
    request = grader_request(state, outcome_of(state))
    text = request.context.messages[0].content[0].text  # type: ignore[union-attr]
    assert request.model == judge
    assert "(its beginning is cut)" in text and "the end" in text and len(text) < WORK_CHARS + 2000


@pytest.mark.parametrize(
    ("answer", "iteration", "result", "explanation"),
    [
        ("SATISFIED\nIt names the moon.", 0, "satisfied", "It names the moon."),
        ("**Satisfied.**\nFine.", 0, "satisfied", "Fine."),
        ("NEEDS_REVISION\nNo moon.", 0, "needs_revision", "No moon."),
        ("Needs revision\nNo moon.", 1, "needs_revision", "No moon."),
        ("NEEDS_REVISION\nStill no moon.", 2, "max_iterations_reached", "Still no moon."),
        ("FAILED\nThis is not a poem at all.", 0, "failed", "This is not a poem at all."),
        ("I am not sure.", 0, "needs_revision", "I am not sure."),
    ],
)
def test_the_answers_first_line_is_the_verdict_and_the_last_iteration_ends_it(
    answer: str, iteration: int, result: OutcomeResult, explanation: str
) -> None:
    outcome = DefinedOutcome(
        outcome_id="outc_1",
        description="d",
        rubric="r",
        max_iterations=3,
        defined_seq=2,
        iteration=iteration,
    )
    usage = Usage(input_tokens=90, output_tokens=9)
    response = ModelResponse(
        content=[TextBlock(text=answer)],
        stop_reason="end_turn",
        usage=usage,
        cost_usd=0.01,
        model="claude-haiku-4-5",
    )
    evaluated = evaluation(outcome, response)
    assert (evaluated.result, evaluated.explanation, evaluated.iteration) == (
        result,
        explanation,
        iteration,
    )
    assert (evaluated.usage, evaluated.cost_usd, evaluated.model) == (
        usage,
        0.01,
        "claude-haiku-4-5",
    )


def test_a_grader_that_gave_no_answer_fails_the_evaluation_with_the_reason() -> None:
    outcome = DefinedOutcome(
        outcome_id="outc_1", description="d", rubric="r", max_iterations=3, defined_seq=2
    )
    failed = evaluation(outcome, None, "the grader could not answer: overloaded")
    assert (failed.result, failed.explanation, failed.cost_usd) == (
        "failed",
        "the grader could not answer: overloaded",
        0.0,
    )
