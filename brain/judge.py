"""The completion check: someone other than the worker says whether the goal is met.

A command oracle runs in the session's sandbox and passes on exit status 0; a judge model
reads the conversation and the criteria and answers PASS or FAIL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from brain.context import ChatMessage, build_context
from brain.providers import ModelProvider, ModelRequest, RetryPolicy, complete_with_retries
from brain.state import SessionState
from schemas import JudgeVerdict, ModelSpec, TextBlock, ToolOutcome

DETAIL_CHARS: Final = 2000

JUDGE_PROMPT: Final = (
    "You check whether an AI agent has met its goal. Judge only by the conversation above "
    "and these criteria:\n{criteria}\n\nAnswer PASS or FAIL on the first line, then say why "
    "in one or two sentences."
)


def verdict_from_outcome(command: str, outcome: ToolOutcome) -> JudgeVerdict:
    passed = outcome.outcome == "ok" and outcome.exit_code in (0, None) and not outcome.is_error
    status = "passed" if passed else f"failed (exit {outcome.exit_code}, {outcome.outcome})"
    detail = f"`{command}` {status}: {outcome.output[-DETAIL_CHARS:]}".strip()
    return JudgeVerdict(passed=passed, judge="command", detail=detail)


async def judge_by_model(
    providers: Callable[[ModelSpec], ModelProvider], state: SessionState, retry: RetryPolicy
) -> JudgeVerdict:
    assert state.spec is not None
    condition = state.spec.completion
    model = condition.judge_model or state.spec.model
    context = build_context(state)
    question = JUDGE_PROMPT.format(criteria=condition.criteria or "the user's request is done")
    ask = ChatMessage(role="user", content=[TextBlock(text=question)])
    request = ModelRequest(
        session_id=state.session_id,
        model=model,
        context=msgspec.structs.replace(context, messages=[*context.messages, ask]),
        turn=state.turns,
    )
    response = await complete_with_retries(providers(model), request, None, retry)
    answer = "".join(b.text for b in response.content if isinstance(b, TextBlock)).strip()
    passed = answer.upper().startswith("PASS")
    return JudgeVerdict(passed=passed, judge="model", detail=answer[:DETAIL_CHARS])
