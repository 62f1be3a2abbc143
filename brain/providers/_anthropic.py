"""Anthropic's Messages API with tools, streamed, through the official SDK (`AsyncAnthropic`).

The stream is read event by event (not with the SDK's accumulating helper, which parses tool
input as *partial* JSON and so would take a cut-off input for a whole one): text deltas go to
`on_delta` as they come, a tool call's input is parsed strictly when its block closes, and a
stream that ends before `message_stop` is a malformed response.

The SDK does no retries (`max_retries=0`): `complete_with_retries` owns the policy. The key is
read from the environment variable `ModelSpec.api_key_env`, which must be set, or else
`options["api_key_env"]` (default `ANTHROPIC_API_KEY`); `base_url` points the client at a
proxy or gateway.

`temperature` is not sent: the SDK (2.x) speaks API version 2026-10-21, which rejects the
sampling parameters (temperature, top_p, top_k) with a 400 on every model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Final, Literal

import anthropic
import httpx2
import msgspec
from anthropic.types import (
    AssistantMessageParam,
    MessageParam,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextBlockParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
    UserMessageParam,
)

from brain.context import Context
from brain.providers._base import ModelRequest, ProviderError, ToolDefinition
from brain.providers._common import (
    SdkClients,
    api_key,
    checked_tool_input,
    elapsed_ms,
    explain,
    malformed,
    response_call_id,
    status_error,
    tool_input,
    unreachable,
    wire_call_id,
)
from brain.providers._pricing import cost_usd, price_for
from schemas import (
    AssistantBlock,
    ModelResponse,
    StopReason,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)

NAME: Final = "anthropic"
_STOP_REASONS: Final[dict[str, StopReason]] = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "refusal": "refusal",
    "model_context_window_exceeded": "max_tokens",
    "pause_turn": "end_turn",
}
_EVENT_TYPES: Final = frozenset(
    {
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)
# Error types an error event in the middle of a stream may carry that a retry will not fix.
_FINAL_ERROR_TYPES: Final = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
    }
)


class AnthropicProvider:
    """One SDK client per (base_url, key), made on first use and kept until `aclose()`."""

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._clients = SdkClients(_make_client)

    async def complete(
        self, request: ModelRequest, on_delta: Callable[[str], None] | None = None
    ) -> ModelResponse:
        spec = request.model
        price = price_for(spec)
        client = self.client_for(
            spec.base_url, api_key(NAME, spec, "ANTHROPIC_API_KEY", self._environ)
        )
        system = request.context.system
        tools = [_tool(t) for t in request.tools]
        reader = _Reader(on_delta)
        started = time.monotonic()
        try:
            stream = await client.messages.create(
                model=spec.name,
                max_tokens=spec.max_output_tokens,
                system=system if system else anthropic.omit,
                messages=_messages(request.context),
                tools=tools if tools else anthropic.omit,
                stream=True,
            )
            async with stream:
                try:
                    async for event in stream:
                        reader.feed(event)
                except (ValueError, TypeError, AttributeError, KeyError) as exc:
                    # An event that is not JSON, or not shaped as the API documents.
                    raise malformed(NAME, f"{type(exc).__name__}: {exc}") from exc
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from exc
        except anthropic.APITimeoutError as exc:
            raise ProviderError(f"{NAME}: timed out waiting for the API", retryable=True) from exc
        except anthropic.APIConnectionError as exc:
            raise unreachable(NAME, client.base_url, exc) from exc
        except anthropic.APIError as exc:
            raise ProviderError(f"{NAME}: {exc.message}", retryable=True) from exc
        except httpx2.TimeoutException as exc:
            raise ProviderError(f"{NAME}: timed out reading the response", retryable=True) from exc
        except httpx2.HTTPError as exc:
            raise ProviderError(
                f"{NAME}: the connection broke mid-response{explain(type(exc).__name__, str(exc))}",
                retryable=True,
            ) from exc
        content, stop_reason, usage = reader.finish(spec.max_output_tokens)
        return ModelResponse(
            content=content,
            stop_reason=stop_reason,
            usage=usage,
            cost_usd=cost_usd(price, usage),
            model=reader.model or spec.name,
            duration_ms=elapsed_ms(started),
        )

    def client_for(self, base_url: str | None, key: str) -> anthropic.AsyncAnthropic:
        return self._clients.get(base_url, key)

    async def aclose(self) -> None:
        await self._clients.aclose()


def _make_client(base_url: str | None, key: str) -> anthropic.AsyncAnthropic:
    # No retries in the SDK: complete_with_retries does them, the same for every provider.
    return anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0)


class _Block(msgspec.Struct, kw_only=True):
    kind: Literal["text", "tool_use", "other"]
    parts: list[str] = []
    call_id: str = ""
    name: str = ""
    start_input: dict[str, object] = {}
    closed: bool = False


class _Reader:
    """Folds the stream's events into a response, passing text deltas on as they come."""

    def __init__(self, on_delta: Callable[[str], None] | None) -> None:
        self._on_delta = on_delta
        self._blocks: dict[int, _Block] = {}
        self._usage: dict[str, int] = {}
        self._stop_reason: str | None = None
        self._started = False
        self._stopped = False
        self.model = ""

    def feed(self, event: object) -> None:
        # Dispatch on the `type` the event carries: the SDK builds an event of a kind it does
        # not know as the first class of its union, so a class check alone would misread it.
        kind = getattr(event, "type", None)
        if kind == "message_start" and isinstance(event, RawMessageStartEvent):
            self._started = True
            self.model = event.message.model
            self._count(event.message.usage)
            return
        if kind not in _EVENT_TYPES:
            return  # a newer kind of event: the API's versioning policy says to skip those
        if not self._started:
            raise malformed(NAME, f"{kind} before message_start")
        if isinstance(event, RawContentBlockStartEvent):
            if not isinstance(event.index, int):
                raise malformed(NAME, "a content block without an index")
            block = event.content_block
            if block.type == "text":
                self._blocks[event.index] = _Block(kind="text")
                self._text(self._blocks[event.index], block.text)
            elif block.type == "tool_use":
                self._blocks[event.index] = _Block(
                    kind="tool_use",
                    call_id=block.id or "",
                    name=block.name or "",
                    start_input=block.input if isinstance(block.input, dict) else {},
                )
            else:  # thinking, server tools: nothing our conversation records
                self._blocks[event.index] = _Block(kind="other")
        elif isinstance(event, RawContentBlockDeltaEvent):
            current, delta = self._block(event.index), event.delta
            if current.kind == "text" and delta.type == "text_delta":
                self._text(current, delta.text)
            elif current.kind == "tool_use" and delta.type == "input_json_delta":
                current.parts.append(delta.partial_json or "")
        elif isinstance(event, RawContentBlockStopEvent):
            self._block(event.index).closed = True
        elif isinstance(event, RawMessageDeltaEvent):
            self._stop_reason = event.delta.stop_reason or self._stop_reason
            self._count(event.usage)
        elif isinstance(event, RawMessageStopEvent):
            self._stopped = True

    def finish(self, max_tokens: int) -> tuple[list[AssistantBlock], StopReason, Usage]:
        if not self._stopped:
            raise malformed(NAME, "the stream ended before message_stop")
        content: list[AssistantBlock] = []
        taken: set[str] = set()
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if not block.closed:
                raise malformed(NAME, f"content block {index} was never closed")
            if block.kind == "text" and block.parts:
                content.append(TextBlock(text="".join(block.parts)))
            elif block.kind == "tool_use":
                content.append(self._tool_use(block, taken, max_tokens))
        has_tools = any(isinstance(b, ToolUseBlock) for b in content)
        stop_reason = _STOP_REASONS.get(self._stop_reason or "") or (
            "tool_use" if has_tools else "end_turn"
        )
        usage = Usage(
            input_tokens=self._usage.get("input_tokens", 0),
            output_tokens=self._usage.get("output_tokens", 0),
            cache_read_tokens=self._usage.get("cache_read_input_tokens", 0),
            cache_write_tokens=self._usage.get("cache_creation_input_tokens", 0),
        )
        return content, stop_reason, usage

    def _tool_use(self, block: _Block, taken: set[str], max_tokens: int) -> ToolUseBlock:
        if not block.name:
            raise malformed(NAME, "a tool call without a name")
        try:
            arguments = tool_input(NAME, block.name, "".join(block.parts))
        except ProviderError as exc:
            if self._stop_reason == "max_tokens":
                # The same request would be cut at the same place: say what to change.
                raise ProviderError(
                    f"{NAME}: the response reached max_output_tokens ({max_tokens}) inside "
                    f"tool call {block.name!r}; raise the model's max_output_tokens",
                    retryable=False,
                ) from exc
            raise
        return ToolUseBlock(
            call_id=response_call_id(block.call_id, taken),
            name=block.name,
            input=(
                arguments
                if block.parts
                else checked_tool_input(NAME, block.name, dict(block.start_input))
            ),
        )

    def _block(self, index: int) -> _Block:
        block = self._blocks.get(index)
        if block is None:
            raise malformed(NAME, f"an event for content block {index}, which never started")
        return block

    def _text(self, block: _Block, text: str) -> None:
        if not text:
            return
        block.parts.append(text)
        if self._on_delta is not None:
            self._on_delta(text)

    def _count(self, usage: object) -> None:
        # Counts are cumulative; a message_delta repeats or updates those of message_start.
        for field in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = getattr(usage, field, None)
            if isinstance(value, int):
                self._usage[field] = value


def _messages(context: Context) -> list[MessageParam]:
    messages: list[MessageParam] = []
    for message in context.messages:
        blocks: list[TextBlockParam | ToolUseBlockParam | ToolResultBlockParam] = []
        for block in message.content:
            if isinstance(block, TextBlock):
                if block.text:  # the API rejects empty text blocks
                    blocks.append(TextBlockParam(type="text", text=block.text))
            elif isinstance(block, ToolUseBlock):
                blocks.append(
                    ToolUseBlockParam(
                        type="tool_use",
                        id=wire_call_id(block.call_id),
                        name=block.name,
                        input=block.input,
                    )
                )
            else:
                blocks.append(_tool_result(block))
        if not blocks:
            blocks.append(TextBlockParam(type="text", text="(empty)"))
        if message.role == "user":
            messages.append(UserMessageParam(role="user", content=blocks))
        else:
            messages.append(AssistantMessageParam(role="assistant", content=blocks))
    return messages


def _tool_result(block: ToolResultBlock) -> ToolResultBlockParam:
    result = ToolResultBlockParam(type="tool_result", tool_use_id=wire_call_id(block.call_id))
    if block.output:
        result["content"] = block.output
    if block.is_error:
        result["is_error"] = True
    return result


def _tool(tool: ToolDefinition) -> ToolParam:
    return ToolParam(name=tool.name, description=tool.description, input_schema=tool.input_schema)


def _status_error(exc: anthropic.APIStatusError) -> ProviderError:
    detail = exc.api_message or (exc.body if isinstance(exc.body, str) else None)
    if exc.status_code < 400:
        # An `error` event inside a stream that had begun with 200 (e.g. overloaded_error).
        return ProviderError(
            f"{NAME}: the stream broke off with an error{explain(exc.type, detail)}",
            retryable=exc.type not in _FINAL_ERROR_TYPES,
        )
    return status_error(NAME, exc.status_code, exc.type, detail, exc.response.headers)
