"""OpenAI's Chat Completions API with function tools, streamed, through the official SDK.

Any server that speaks the API works through `ModelSpec.base_url` (vLLM, Ollama, llama.cpp,
gateways). Text deltas go to `on_delta` as they come; tool call fragments are gathered by
their index and each call's arguments parsed strictly once the stream is done; usage comes in
a last chunk (`stream_options.include_usage`). A stream that ends without a finish reason is
a malformed response.

The SDK does no retries (`max_retries=0`): `complete_with_retries` owns the policy. The key is
read from the environment variable `ModelSpec.api_key_env`, which must be set, or else
`options["api_key_env"]` (default `OPENAI_API_KEY`); there, with a `base_url` and no key, a
placeholder is sent, as local servers ask for none.

The output limit goes in `max_completion_tokens` for OpenAI itself (its reasoning models
refuse `max_tokens`) and in `max_tokens`, the field every compatible server knows, when a
`base_url` is set; `options["max_tokens_param"]` picks either explicitly.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Final

import httpx2
import msgspec
import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from brain.context import Context
from brain.providers._base import ModelRequest, ProviderError, ToolDefinition
from brain.providers._common import (
    SdkClients,
    api_key,
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
    ModelSpec,
    StopReason,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)

NAME: Final = "openai"
_STOP_REASONS: Final[dict[str, StopReason]] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}
_MAX_TOKENS_PARAMS: Final = ("max_completion_tokens", "max_tokens")


class OpenAIProvider:
    """One SDK client per (base_url, key), made on first use and kept until `aclose()`."""

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._clients = SdkClients(_make_client)

    async def complete(
        self, request: ModelRequest, on_delta: Callable[[str], None] | None = None
    ) -> ModelResponse:
        spec = request.model
        price = price_for(spec)
        limit_param = _max_tokens_param(spec)
        client = self.client_for(
            spec.base_url, api_key(NAME, spec, "OPENAI_API_KEY", self._environ)
        )
        tools = [_tool(t) for t in request.tools]
        limit = spec.max_output_tokens
        reader = _Reader(on_delta)
        started = time.monotonic()
        try:
            stream = await client.chat.completions.create(
                model=spec.name,
                messages=_messages(request.context),
                tools=tools if tools else openai.omit,
                max_completion_tokens=limit
                if limit_param == "max_completion_tokens"
                else openai.omit,
                max_tokens=limit if limit_param == "max_tokens" else openai.omit,
                temperature=spec.temperature if spec.temperature is not None else openai.omit,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with stream:
                try:
                    async for chunk in stream:
                        reader.feed(chunk)
                except (ValueError, TypeError, AttributeError, KeyError) as exc:
                    # A chunk that is not JSON, or not shaped as the API documents.
                    raise malformed(NAME, f"{type(exc).__name__}: {exc}") from exc
        except openai.APIStatusError as exc:
            kind, detail = _error_fields(exc.body)
            raise status_error(NAME, exc.status_code, kind, detail, exc.response.headers) from exc
        except openai.APITimeoutError as exc:
            raise ProviderError(f"{NAME}: timed out waiting for the API", retryable=True) from exc
        except openai.APIConnectionError as exc:
            raise unreachable(NAME, client.base_url, exc) from exc
        except openai.APIError as exc:
            # An error object inside a stream that had begun with 200.
            kind, detail = _error_fields(exc.body)
            raise ProviderError(
                f"{NAME}: the stream broke off with an error{explain(kind, detail or exc.message)}",
                retryable=True,
            ) from exc
        except httpx2.HTTPError as exc:
            raise ProviderError(
                f"{NAME}: the connection broke mid-response{explain(type(exc).__name__, str(exc))}",
                retryable=True,
            ) from exc
        content, stop_reason, usage = reader.finish(limit)
        return ModelResponse(
            content=content,
            stop_reason=stop_reason,
            usage=usage,
            cost_usd=cost_usd(price, usage),
            model=reader.model or spec.name,
            duration_ms=elapsed_ms(started),
        )

    def client_for(self, base_url: str | None, key: str) -> openai.AsyncOpenAI:
        return self._clients.get(base_url, key)

    async def aclose(self) -> None:
        await self._clients.aclose()


def _make_client(base_url: str | None, key: str) -> openai.AsyncOpenAI:
    # No retries in the SDK: complete_with_retries does them, the same for every provider.
    return openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0)


class _Call(msgspec.Struct, kw_only=True):
    provider_id: str = ""
    name: str = ""
    arguments: list[str] = []


class _Reader:
    """Folds the stream's chunks into a response, passing text deltas on as they come."""

    def __init__(self, on_delta: Callable[[str], None] | None) -> None:
        self._on_delta = on_delta
        self._text: list[str] = []
        self._calls: dict[int, _Call] = {}
        self._finish_reason: str | None = None
        self._usage = Usage()
        self.model = ""

    def feed(self, chunk: ChatCompletionChunk) -> None:
        # Compatible servers leave fields out (the SDK then reads None): only what a response
        # cannot do without (a tool call's name, a finish reason) is required.
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            details = chunk.usage.prompt_tokens_details
            cached = (details.cached_tokens or 0) if details else 0
            written = (details.cache_write_tokens or 0) if details else 0
            # prompt_tokens counts the cached ones too; Usage keeps each kind apart.
            self._usage = Usage(
                input_tokens=max((chunk.usage.prompt_tokens or 0) - cached - written, 0),
                output_tokens=chunk.usage.completion_tokens or 0,
                cache_read_tokens=cached,
                cache_write_tokens=written,
            )
        for choice in chunk.choices or []:
            if choice.index or choice.delta is None:
                continue  # we ask for one choice, index 0
            for text in (choice.delta.content, choice.delta.refusal):
                if text:
                    self._text.append(text)
                    if self._on_delta is not None:
                        self._on_delta(text)
            for fragment in choice.delta.tool_calls or []:
                self._fragment(fragment)
            self._finish_reason = choice.finish_reason or self._finish_reason

    def _fragment(self, fragment: ChoiceDeltaToolCall) -> None:
        index = fragment.index
        if not isinstance(index, int):
            # A server that numbers no calls: an id starts a new one, the rest continue it.
            index = len(self._calls) if fragment.id or not self._calls else max(self._calls)
        call = self._calls.setdefault(index, _Call())
        call.provider_id = call.provider_id or fragment.id or ""
        if fragment.function is not None:
            call.name = _joined_name(call.name, fragment.function.name or "")
            call.arguments.append(fragment.function.arguments or "")

    def finish(self, max_tokens: int) -> tuple[list[AssistantBlock], StopReason, Usage]:
        if self._finish_reason is None:
            raise malformed(NAME, "the stream ended without a finish_reason")
        content: list[AssistantBlock] = []
        if text := "".join(self._text):
            content.append(TextBlock(text=text))
        taken: set[str] = set()
        for index in sorted(self._calls):
            content.append(self._tool_use(self._calls[index], taken, max_tokens))
        stop_reason = _STOP_REASONS.get(self._finish_reason, "end_turn")
        if self._calls and stop_reason == "end_turn":
            stop_reason = "tool_use"  # some local servers say "stop" after tool calls
        return content, stop_reason, self._usage

    def _tool_use(self, call: _Call, taken: set[str], max_tokens: int) -> ToolUseBlock:
        if not call.name:
            raise malformed(NAME, "a tool call without a name")
        try:
            arguments = tool_input(NAME, call.name, "".join(call.arguments))
        except ProviderError as exc:
            if self._finish_reason == "length":
                # The same request would be cut at the same place: say what to change.
                raise ProviderError(
                    f"{NAME}: the response reached max_output_tokens ({max_tokens}) inside "
                    f"tool call {call.name!r}; raise the model's max_output_tokens",
                    retryable=False,
                ) from exc
            raise
        return ToolUseBlock(
            call_id=response_call_id(call.provider_id, taken), name=call.name, input=arguments
        )


def _messages(context: Context) -> list[ChatCompletionMessageParam]:
    messages: list[ChatCompletionMessageParam] = []
    if context.system:
        messages.append({"role": "system", "content": context.system})
    for message in context.messages:
        texts = [b.text for b in message.content if isinstance(b, TextBlock) and b.text]
        if message.role == "assistant":
            messages.append(_assistant(texts, message.content))
            continue
        results = [b for b in message.content if isinstance(b, ToolResultBlock)]
        # Results answer the assistant message just before; they go first, one message each.
        messages.extend(
            {"role": "tool", "tool_call_id": wire_call_id(r.call_id), "content": _result_text(r)}
            for r in results
        )
        if texts or not results:
            messages.append({"role": "user", "content": "\n\n".join(texts) or "(continue)"})
    return messages


def _assistant(
    texts: list[str], blocks: list[TextBlock | ToolUseBlock | ToolResultBlock]
) -> ChatCompletionAssistantMessageParam:
    calls = [
        ChatCompletionMessageFunctionToolCallParam(
            id=wire_call_id(b.call_id),
            type="function",
            function={"name": b.name, "arguments": json.dumps(b.input, ensure_ascii=False)},
        )
        for b in blocks
        if isinstance(b, ToolUseBlock)
    ]
    # Not null with tool calls: llama.cpp's server answers that with a 500; "" says the same.
    message = ChatCompletionAssistantMessageParam(
        role="assistant", content="\n\n".join(texts) or ("" if calls else "(empty)")
    )
    if calls:
        message["tool_calls"] = calls
    return message


def _joined_name(so_far: str, fragment: str) -> str:
    """A tool call's name from its streamed fragments. The API sends it once; some servers
    (llama.cpp's) send the whole name in every chunk: a fragment that starts with what came
    so far replaces it rather than being appended (`write_filewrite_file`)."""
    return fragment if fragment.startswith(so_far) else so_far + fragment


def _result_text(result: ToolResultBlock) -> str:
    output = result.output or "(no output)"
    # The API has no error flag on a tool message: say it in the text.
    return f"Error: {output}" if result.is_error else output


def _tool(tool: ToolDefinition) -> ChatCompletionFunctionToolParam:
    return ChatCompletionFunctionToolParam(
        type="function",
        function={
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.input_schema,
        },
    )


def _max_tokens_param(spec: ModelSpec) -> str:
    default = "max_tokens" if spec.base_url else "max_completion_tokens"
    param = spec.options.get("max_tokens_param", default)
    if param not in _MAX_TOKENS_PARAMS:
        raise ProviderError(
            f"{NAME}: options.max_tokens_param must be one of {', '.join(_MAX_TOKENS_PARAMS)},"
            f" not {param!r}",
            retryable=False,
        )
    return str(param)


def _error_fields(body: object) -> tuple[str | None, str | None]:
    """(code or type, message) of an error body: the SDK passes its `error` object."""
    if isinstance(body, str):
        return None, body
    if not isinstance(body, dict):
        return None, None
    kind = body.get("code") or body.get("type")
    message = body.get("message")
    return (
        str(kind) if kind is not None else None,
        message if isinstance(message, str) else None,
    )
