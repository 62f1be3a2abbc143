"""Context building: the conversation a model is sent, rebuilt from the folded state.

Whatever the log holds (a call whose sandbox died, a compaction that cut between a tool_use and
its result, a failed completion check), the result is a conversation every provider accepts:
it starts with the user, roles alternate, every tool_use is answered by exactly one
tool_result in the next message, and no tool_result answers nothing.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from brain.state import SessionState
from schemas import ContentBlock, TextBlock, ToolResultBlock, ToolUseBlock

NO_RESULT = "no result was recorded for this call"


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True):
    role: Literal["user", "assistant"]
    content: list[ContentBlock]


class Context(msgspec.Struct, frozen=True, kw_only=True):
    system: str
    messages: list[ChatMessage]


def build_context(state: SessionState) -> Context:
    assert state.spec is not None
    system = state.spec.system_prompt
    if state.summary:
        system = f"{system}\n\nSummary of the conversation so far:\n{state.summary}".strip()
    messages: list[ChatMessage] = []
    asked: list[str] = []  # tool_use ids of the assistant message just before
    previous_seq = 0
    for message in state.messages:
        if message.role == "assistant":
            if not messages:
                messages.append(_user([TextBlock(text="(earlier conversation summarized)")]))
            elif messages[-1].role == "assistant":
                # Two responses in a row (the completion check sent the model back to work).
                messages.append(
                    _user(_answers(asked, []) + _notes(state, previous_seq, message.seq))
                )
            messages.append(ChatMessage(role="assistant", content=list(message.content)))
            asked = [b.call_id for b in message.content if isinstance(b, ToolUseBlock)]
        else:
            messages.append(_user(_answers(asked, message.content)))
            asked = []
        previous_seq = message.seq
    if messages and messages[-1].role == "assistant":
        closing = _answers(asked, []) + _notes(state, previous_seq, state.seq + 1)
        if closing:
            messages.append(_user(closing))
    return Context(system=system, messages=messages)


def _answers(asked: list[str], content: list[ContentBlock]) -> list[ContentBlock]:
    """The user turn after a tool-using response: one result per tool_use, in its order,
    then whatever else the user said; results that answer nothing are dropped."""
    results = {b.call_id: b for b in content if isinstance(b, ToolResultBlock)}
    answered: list[ContentBlock] = [
        _with_reference(results[call_id])
        if call_id in results
        else ToolResultBlock(call_id=call_id, output=NO_RESULT, is_error=True)
        for call_id in asked
    ]
    return answered + [b for b in content if not isinstance(b, ToolResultBlock)]


def _notes(state: SessionState, after: int, before: int) -> list[ContentBlock]:
    """What the model must be told that no message says: a failed completion check."""
    verdict = state.verdict
    if verdict is None or verdict.passed or not after < verdict.seq < before:
        return []
    return [TextBlock(text=f"The completion check failed ({verdict.judge}): {verdict.detail}")]


def _with_reference(result: ToolResultBlock) -> ToolResultBlock:
    if result.blob is None:
        return result
    note = f"\n[full output: {result.blob.size} bytes, blob {result.blob.digest}]"
    return msgspec.structs.replace(result, output=result.output + note)


def _user(content: list[ContentBlock]) -> ChatMessage:
    # A provider rejects an empty turn (all its results answered calls cut by compaction).
    return ChatMessage(role="user", content=content or [TextBlock(text="(continue)")])
