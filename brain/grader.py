"""The outcome grader: a separate evaluator, not the worker, judges the work by a rubric.

It has its own prompt and its own context: not the worker's conversation but a transcript of
the work done since the outcome was defined, with the task and the rubric, so it grades the
result instead of carrying on the worker's reasoning. Its model is the completion
condition's judge model when the spec names one, else the worker's (for `keel-scripted`, a
grader that checks the rubric's backquoted tokens). It answers SATISFIED, NEEDS_REVISION or
FAILED on its first line, then why; `evaluation` turns that into the recorded result, which
is `max_iterations_reached` when the last allowed evaluation still finds the work short.
"""

from __future__ import annotations

from typing import Final

import msgspec

from brain.context import ChatMessage, Context
from brain.providers import Grading, ModelRequest
from brain.state import DefinedOutcome, Message, SessionState
from schemas import (
    ModelResponse,
    ModelSpec,
    OutcomeEvaluated,
    OutcomeResult,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)

# The grader reads at most this much of the work (its end, where the result is).
WORK_CHARS: Final = 20_000
EXPLANATION_CHARS: Final = 2000

GRADER_SYSTEM: Final = (
    "You grade the work of an AI agent. You did not do the work and owe it nothing: judge "
    "only whether what it produced meets the rubric, strictly and fairly."
)

GRADER_PROMPT: Final = """The task the agent was given:
{description}

The rubric to grade its work by:
{rubric}

The agent's work since it was given the task, oldest first{cut}:
{work}

Answer with one word on the first line: SATISFIED if the work meets every criterion of the \
rubric; NEEDS_REVISION if it does not yet; FAILED if the rubric cannot apply to this work at \
all. Then explain in a few sentences: for NEEDS_REVISION, exactly what is missing or wrong, \
so the agent can fix it."""


def grader_request(state: SessionState, outcome: DefinedOutcome) -> ModelRequest:
    """The request the grader is sent about the work so far."""
    assert state.spec is not None
    work = [m for m in state.messages if m.seq >= outcome.defined_seq]
    text = "\n".join(_line(m, block) for m in work for block in m.content)
    cut = ""
    if len(text) > WORK_CHARS:
        text, cut = text[-WORK_CHARS:], " (its beginning is cut)"
    prompt = GRADER_PROMPT.format(
        description=outcome.description, rubric=outcome.rubric, cut=cut, work=text
    )
    return ModelRequest(
        session_id=state.session_id,
        model=grader_model(state),
        context=Context(
            system=GRADER_SYSTEM,
            messages=[ChatMessage(role="user", content=[TextBlock(text=prompt)])],
        ),
        turn=state.turns,
        grading=Grading(rubric=outcome.rubric, last_message=last_message(work)),
    )


def grader_model(state: SessionState) -> ModelSpec:
    assert state.spec is not None
    return state.spec.completion.judge_model or state.spec.model


def last_message(messages: list[Message]) -> str:
    """The text of the worker's last response that has any."""
    for message in reversed(messages):
        if message.role == "assistant":
            texts = [b.text for b in message.content if isinstance(b, TextBlock)]
            if texts:
                return "\n\n".join(texts)
    return ""


def evaluation(
    outcome: DefinedOutcome, answer: ModelResponse | None, failure: str = ""
) -> OutcomeEvaluated:
    """The recorded end of an evaluation: from the grader's answer, or, when it gave none,
    `failed` with `failure` as the explanation."""
    if answer is None:
        return OutcomeEvaluated(
            outcome_id=outcome.outcome_id,
            iteration=outcome.iteration,
            result="failed",
            explanation=failure[:EXPLANATION_CHARS],
        )
    text = "".join(b.text for b in answer.content if isinstance(b, TextBlock)).strip()
    first, _, rest = text.partition("\n")
    word = first.strip().strip("*#:. ").upper().replace(" ", "_")
    result: OutcomeResult
    if word.startswith("SATISFIED"):
        result = "satisfied"
    elif word.startswith("FAILED"):
        result = "failed"
    else:
        # NEEDS_REVISION, or an answer that is not a verdict: the work is not accepted.
        result = "needs_revision"
    if result == "needs_revision" and outcome.iteration + 1 >= outcome.max_iterations:
        result = "max_iterations_reached"
    return OutcomeEvaluated(
        outcome_id=outcome.outcome_id,
        iteration=outcome.iteration,
        result=result,
        explanation=(rest.strip() or text)[:EXPLANATION_CHARS],
        usage=answer.usage,
        cost_usd=answer.cost_usd,
        model=answer.model,
    )


def _line(message: Message, block: object) -> str:
    who = "agent" if message.role == "assistant" else "user"
    match block:
        case TextBlock(text=text):
            return f"[{who}] {text}"
        case ToolUseBlock(name=name, input=arguments):
            return f"[agent called {name}] {msgspec.json.encode(arguments).decode()}"
        case ToolResultBlock(output=output, is_error=is_error):
            return f"[tool {'error' if is_error else 'result'}] {output}"
        case _:
            return ""
