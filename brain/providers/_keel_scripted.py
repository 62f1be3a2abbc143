"""`keel-scripted`: a model that answers by rules, for users' integration tests and the demo.

It reads the last user message of the conversation it is sent:

- tool results (its earlier calls came back): one text block per result, `NAME returned:
  OUTPUT`, or `NAME was denied: OUTPUT` for a call keel refused (a denied approval, a policy
  that denies the tool), NAME being the tool the matching tool_use called; the turn ends;
- else, its last text block (past the `[message from ...]` line a thread's input from
  another thread starts with): a first line `/tool NAME {json}` asks for one call of NAME with
  that input (`{}` when there is none); its id comes from the session and the turn, as the
  scripted model's do, so a replay asks the same thing with the same id. Input that is not a
  JSON object gets a text reply saying so, never an error;
- anything else: `echo: TEXT`.

A message from another thread (a task or message from the agent that spawned it) is read
without the `[message from NAME]` line keel puts first, so a coordinator can hand a
keel-scripted worker a `/tool` line as its task.

Text is streamed word by word; usage is made up, small and deterministic (a token per four
characters, plus one), so budgets and cost accounting see numbers; the price is
`price_for`'s (zero unless the options set one).

Asked to grade (`ModelRequest.grading`), it grades an outcome the same plain way
(`rubric_satisfied`): the worker's last message must contain every `backquoted` token of the
rubric. It answers as keel's grader prompt asks, the verdict (SATISFIED or NEEDS_REVISION)
on the first line and why on the next.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Final

import msgspec

from brain.context import ChatMessage
from brain.providers._base import ModelRequest
from brain.providers._pricing import cost_usd, price_for
from schemas import (
    MAX_JSON_DEPTH,
    AssistantBlock,
    ModelResponse,
    StopReason,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
    nesting_depth,
)

NAME: Final = "keel-scripted"
# The outputs keel records for a call it refused, as brain/decide.py words them (`Refuse`).
_DENIALS: Final = ("the approval was denied", "the policy denies ")
_TOOL_COMMAND: Final = re.compile(r"/tool(?:\s+(?P<name>\S+)(?:\s+(?P<input>.*))?)?")
_TOKEN: Final = re.compile(r"`([^`]+)`")
# The header brain/fold.py gives a thread's input from another thread.
_FROM_THREAD: Final = re.compile(r"\[message from [^\]]*\]")
_WORD: Final = re.compile(r"\S+\s*|\s+")


class KeelScriptedProvider:
    async def complete(
        self, request: ModelRequest, on_delta: Callable[[str], None] | None = None
    ) -> ModelResponse:
        content, stop_reason = graded(request) if request.grading else answer(request)
        said = [b.text for b in content if isinstance(b, TextBlock)]
        if on_delta is not None:
            for text in said:
                for word in _WORD.findall(text):
                    on_delta(word)
        asked = [_call_text(b) for b in content if isinstance(b, ToolUseBlock)]
        usage = Usage(
            input_tokens=_tokens(_request_text(request)),
            output_tokens=_tokens("".join(said + asked)),
        )
        return ModelResponse(
            content=content,
            stop_reason=stop_reason,
            usage=usage,
            cost_usd=cost_usd(price_for(request.model), usage),
            model=NAME,
        )


def answer(request: ModelRequest) -> tuple[list[AssistantBlock], StopReason]:
    """The response's content and stop reason, by the rules above."""
    messages = request.context.messages
    last = next((i for i in reversed(range(len(messages))) if messages[i].role == "user"), None)
    if last is None:
        return [TextBlock(text="echo: ")], "end_turn"
    results = [b for b in messages[last].content if isinstance(b, ToolResultBlock)]
    if results:
        asked = messages[last - 1].content if last > 0 else []
        names = {b.call_id: b.name for b in asked if isinstance(b, ToolUseBlock)}
        return [_reported(names.get(r.call_id, r.call_id), r) for r in results], "end_turn"
    texts = [b.text for b in messages[last].content if isinstance(b, TextBlock)]
    text = texts[-1] if texts else ""
    lines = text.strip().splitlines()
    if lines and _FROM_THREAD.fullmatch(lines[0]):
        lines = lines[1:]
    command = _TOOL_COMMAND.fullmatch(lines[0].strip()) if lines else None
    if command is None:
        return [TextBlock(text=f"echo: {text}")], "end_turn"
    return _call(request, command["name"], command["input"])


def graded(request: ModelRequest) -> tuple[list[AssistantBlock], StopReason]:
    """A grader's verdict on the worker's last message, by the rubric's tokens."""
    assert request.grading is not None
    satisfied, why = rubric_satisfied(request.grading.rubric, request.grading.last_message)
    verdict = "SATISFIED" if satisfied else "NEEDS_REVISION"
    return [TextBlock(text=f"{verdict}\n{why}")], "end_turn"


def _reported(name: str, result: ToolResultBlock) -> TextBlock:
    if result.is_error and result.output.startswith(_DENIALS):
        return TextBlock(text=f"{name} was denied: {result.output}")
    return TextBlock(text=f"{name} returned: {result.output}")


def _call(
    request: ModelRequest, name: str | None, given: str | None
) -> tuple[list[AssistantBlock], StopReason]:
    if name is None:
        return [TextBlock(text="/tool needs a tool name: /tool NAME {json}")], "end_turn"
    try:
        value = json.loads(given) if given else {}
    except (ValueError, RecursionError) as exc:
        return [TextBlock(text=f"/tool {name}: the input is not valid JSON ({exc})")], "end_turn"
    if not isinstance(value, dict):
        return [TextBlock(text=f"/tool {name}: the input must be a JSON object")], "end_turn"
    if nesting_depth(value) > MAX_JSON_DEPTH:
        return [
            TextBlock(text=f"/tool {name}: the input nests deeper than {MAX_JSON_DEPTH} levels")
        ], "end_turn"
    call_id = f"{request.session_id}:t{request.turn}:0"
    return [ToolUseBlock(call_id=call_id, name=name, input=value)], "tool_use"


def rubric_satisfied(rubric: str, last_message: str) -> tuple[bool, str]:
    """Whether `last_message` contains every `backquoted` token of `rubric`, and why."""
    tokens = list(dict.fromkeys(_TOKEN.findall(rubric)))
    if not tokens:
        return True, "the rubric names no backquoted token, so any message satisfies it"
    missing = [token for token in tokens if token not in last_message]
    if missing:
        return False, "the last message lacks " + _listed(missing)
    return True, "the last message contains " + _listed(tokens)


def _listed(tokens: Iterable[str]) -> str:
    return ", ".join(f"`{token}`" for token in tokens)


def _request_text(request: ModelRequest) -> str:
    return request.context.system + "".join(_message_text(m) for m in request.context.messages)


def _message_text(message: ChatMessage) -> str:
    parts: list[str] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            parts.append(_call_text(block))
        else:
            parts.append(block.output)
    return "".join(parts)


def _call_text(block: ToolUseBlock) -> str:
    return f"{block.name} {msgspec.json.encode(block.input).decode()}"


def _tokens(text: str) -> int:
    return len(text) // 4 + 1
