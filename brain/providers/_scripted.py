"""The scripted model: plays a script of turns from `ModelSpec.options["script"]`.

Deterministic: the turn played is the number of responses the session has recorded, and call
ids are derived from the session and the turn, so a replayed or resumed session asks for the
same thing with the same ids. Optional latency and token usage let drills and benchmarks
stand in for a real model.

A script cannot know the id of its session, nor so of the threads it spawns: a string
`{thread:tN:I}` anywhere in a call's input stands for the id of the thread that call I of
turn N spawned (`brain.threads.thread_id_for`), so a coordinator's script can message it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Final

import msgspec

from brain.providers._base import ModelRequest, ProviderError
from brain.threads import thread_id_for
from schemas import ModelResponse, TextBlock, ToolUseBlock, Usage

_THREAD_OF_CALL: Final = re.compile(r"\{thread:(t\d+:\d+)\}")


class ScriptCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    input: dict[str, object] = {}


class ScriptTurn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    text: str = ""
    tool_calls: list[ScriptCall] = []
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0


class ScriptedProvider:
    async def complete(
        self, request: ModelRequest, on_delta: Callable[[str], None] | None = None
    ) -> ModelResponse:
        if request.summarizing:
            return summary_of(request)
        script = request.model.options.get("script", [])
        if not isinstance(script, list):
            raise ProviderError("invalid script: expected a list of turns", retryable=False)
        if request.turn >= len(script):
            return ModelResponse(
                content=[TextBlock(text="(the script has ended)")],
                stop_reason="end_turn",
                model="scripted",
            )
        try:
            # Only the turn being played: a long script costs nothing per call.
            turn = msgspec.convert(script[request.turn], ScriptTurn)
        except msgspec.ValidationError as exc:
            raise ProviderError(
                f"invalid script turn {request.turn}: {exc}", retryable=False
            ) from exc
        if turn.latency_ms:
            await asyncio.sleep(turn.latency_ms / 1000)
        if turn.text and on_delta is not None:
            for word in turn.text.split(" "):
                on_delta(word + " ")
        content: list[TextBlock | ToolUseBlock] = [TextBlock(text=turn.text)] if turn.text else []
        content += [
            ToolUseBlock(
                call_id=f"{request.session_id}:t{request.turn}:{i}",
                name=c.name,
                input={k: _with_thread_ids(v, request.session_id) for k, v in c.input.items()},
            )
            for i, c in enumerate(turn.tool_calls)
        ]
        return ModelResponse(
            content=content,
            stop_reason="tool_use" if turn.tool_calls else "end_turn",
            usage=Usage(input_tokens=turn.input_tokens, output_tokens=turn.output_tokens),
            model="scripted",
            duration_ms=turn.latency_ms,
        )


def _with_thread_ids(value: object, session_id: str) -> object:
    """`value` with each `{thread:tN:I}` replaced by the id of the thread that call spawned."""
    if isinstance(value, str):
        return _THREAD_OF_CALL.sub(
            lambda m: thread_id_for(session_id, f"{session_id}:{m[1]}"), value
        )
    if isinstance(value, list):
        return [_with_thread_ids(item, session_id) for item in value]
    if isinstance(value, dict):
        return {k: _with_thread_ids(v, session_id) for k, v in value.items()}
    return value


def summary_of(request: ModelRequest) -> ModelResponse:
    """A summary that depends only on the request: how many messages it summarizes, and
    the first words of the first one."""
    messages = request.context.messages
    first = next(
        (b.text for m in messages for b in m.content if isinstance(b, TextBlock)), "nothing"
    )
    text = f"Summary of {len(messages)} messages, starting: {' '.join(first.split()[:12])}"
    return ModelResponse(
        content=[TextBlock(text=text)],
        stop_reason="end_turn",
        usage=Usage(input_tokens=sum(len(m.content) for m in messages), output_tokens=20),
        model="scripted",
    )
