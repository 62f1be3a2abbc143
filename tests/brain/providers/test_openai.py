from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from brain.context import ChatMessage, Context
from brain.providers import (
    ModelRequest,
    ProviderError,
    Providers,
    RetryPolicy,
    complete_with_retries,
)
from brain.providers._openai import _joined_name
from schemas import (
    ModelSpec,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
    is_valid_id,
    load_model_routes,
    resolve_model,
)
from tests.brain.providers.conversation import (
    BASH,
    CONTEXT,
    FAST,
    KEY,
    KEY_ENV,
    PRIOR_ID,
    unused_port,
)
from tests.brain.providers.model_server import ModelServer, Reply, openai_chunks

MODEL = "gpt-4o-mini"
CALL_A = "call_abc123def456ghi789jkl0"
CALL_B = "call_zyx987wvu654tsr321qpo0"


def request(server: ModelServer, **spec: Any) -> ModelRequest:
    model = ModelSpec(
        provider="openai",
        name=MODEL,
        max_output_tokens=1024,
        temperature=0.2,
        base_url=f"{server.url}/v1",  # a local server: vLLM, Ollama, llama.cpp
        options={"api_key_env": KEY_ENV},
    )
    return ModelRequest(
        session_id="ses_o",
        model=msgspec.structs.replace(model, **spec),
        context=CONTEXT,
        tools=[BASH],
    )


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(prompt: int = 1000, completion: int = 57, cached: int = 200) -> dict[str, Any]:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def call_start(index: int, call_id: str, name: str) -> dict[str, Any]:
    fragment = {"name": name, "arguments": ""}
    return chunk(
        {"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": fragment}]}
    )


def arguments(index: int, text: str) -> dict[str, Any]:
    return chunk({"tool_calls": [{"index": index, "function": {"arguments": text}}]})


def text_turn(*parts: str, finish: str = "stop") -> Reply:
    return Reply(
        chunks=openai_chunks(
            chunk({"role": "assistant", "content": ""}),
            *(chunk({"content": p}) for p in parts),
            chunk({}, finish),
            usage_chunk(),
        )
    )


def tool_turn(first_arguments: str = '{"comm') -> Reply:
    # Two calls whose fragments interleave, as the API may send them.
    return Reply(
        chunks=openai_chunks(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Let me "}),
            chunk({"content": "look."}),
            call_start(0, CALL_A, "bash"),
            arguments(0, first_arguments),
            call_start(1, CALL_B, "read_file"),
            arguments(0, 'and": "sudo ls"}'),
            arguments(1, '{"path": "a.txt"}'),
            chunk({}, "tool_calls"),
            usage_chunk(),
        )
    )


def error_reply(status: int, code: str, message: str, **headers: str) -> Reply:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return Reply(status=status, body=body, headers=headers)


async def test_streams_text_and_tool_calls_from_a_custom_base_url(
    server: ModelServer, providers: Providers
) -> None:
    server.reply(tool_turn())
    deltas: list[str] = []
    response = await providers.openai.complete(request(server), on_delta=deltas.append)

    assert deltas == ["Let me ", "look."]
    assert response.content == [
        TextBlock(text="Let me look."),
        ToolUseBlock(call_id=CALL_A, name="bash", input={"command": "sudo ls"}),
        ToolUseBlock(call_id=CALL_B, name="read_file", input={"path": "a.txt"}),
    ]
    assert response.stop_reason == "tool_use"
    assert response.model == "gpt-4o-mini-2024-07-18"
    # prompt_tokens (1000) counts the 200 cached ones too.
    assert response.usage == Usage(input_tokens=800, output_tokens=57, cache_read_tokens=200)
    # gpt-4o-mini: $0.15 input, $0.60 output, $0.075 cached input per MTok.
    assert response.cost_usd == pytest.approx((800 * 0.15 + 57 * 0.6 + 200 * 0.075) / 1e6)
    assert response.duration_ms > 0

    [sent] = server.received
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == {
        "model": MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 1024,
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You are a careful engineer."},
            {"role": "user", "content": "List the files."},
            {
                "role": "assistant",
                "content": "Looking.",
                "tool_calls": [
                    {
                        "id": PRIOR_ID,
                        "type": "function",
                        "function": {"name": "bash", "arguments": '{"command": "ls"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": PRIOR_ID, "content": "Error: permission denied"},
            {"role": "user", "content": "Try with sudo."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "bash",
                    "description": "Run a shell command.",
                    "parameters": BASH.input_schema,
                },
            }
        ],
    }


async def test_a_local_server_without_a_key_gets_a_placeholder(server: ModelServer) -> None:
    providers = Providers(environ={})
    try:
        server.reply(text_turn("Hi."))
        response = await providers.openai.complete(request(server))
    finally:
        await providers.aclose()
    assert response.content == [TextBlock(text="Hi.")]
    assert server.received[0].headers["authorization"] == "Bearer none"


async def test_the_key_comes_from_the_variable_the_model_names(server: ModelServer) -> None:
    providers = Providers(environ={"VLLM_KEY": "sk-vllm"})
    try:
        server.reply(text_turn("Hi."))
        await providers.openai.complete(request(server, api_key_env="VLLM_KEY"))
    finally:
        await providers.aclose()
    assert server.received[0].headers["authorization"] == "Bearer sk-vllm"


async def test_a_model_routed_by_the_models_file_is_called_with_its_routes_key(
    server: ModelServer, tmp_path: Path
) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[route]]\nmatch = "qwen*"\nprovider = "openai"\nbase_url = "{server.url}/v1"\n'
        'api_key_env = "VLLM_KEY"\nname = "Qwen/Qwen2.5-Coder"\n'
    )
    spec = resolve_model("qwen2.5-coder", load_model_routes(str(models)))
    providers = Providers(environ={"VLLM_KEY": "sk-vllm", "OPENAI_API_KEY": "sk-openai"})
    try:
        server.reply(text_turn("Hi."))
        await providers.provider_for(spec).complete(
            ModelRequest(session_id="ses_o", model=spec, context=CONTEXT)
        )
    finally:
        await providers.aclose()
    [sent] = server.received
    assert sent.headers["authorization"] == "Bearer sk-vllm"
    assert sent.body["model"] == "Qwen/Qwen2.5-Coder"


async def test_a_named_key_variable_that_is_unset_fails_even_for_a_local_server(
    server: ModelServer,
) -> None:
    # Named by the operator, the key is meant to be sent: no placeholder stands in for it.
    with pytest.raises(ProviderError) as caught:
        await Providers(environ={}).openai.complete(request(server, api_key_env="VLLM_KEY"))
    assert str(caught.value) == "openai: no API key: VLLM_KEY is not set"
    assert not caught.value.retryable
    assert server.received == []


async def test_the_output_limit_field_can_be_chosen(
    server: ModelServer, providers: Providers
) -> None:
    server.reply(text_turn("Hi."))
    options = {"api_key_env": KEY_ENV, "max_tokens_param": "max_completion_tokens"}
    await providers.openai.complete(request(server, options=options))
    body = server.received[0].body
    assert body["max_completion_tokens"] == 1024 and "max_tokens" not in body

    with pytest.raises(ProviderError) as caught:
        await providers.openai.complete(request(server, options={"max_tokens_param": "limit"}))
    assert not caught.value.retryable and "max_tokens_param" in str(caught.value)
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")],
)
async def test_finish_reasons(
    server: ModelServer, providers: Providers, finish: str, stop_reason: str
) -> None:
    server.reply(text_turn("Hel", "lo.", finish=finish))
    response = await providers.openai.complete(request(server))
    assert response.stop_reason == stop_reason
    assert response.content == [TextBlock(text="Hello.")]


async def test_a_stop_after_tool_calls_is_a_tool_use(
    server: ModelServer, providers: Providers
) -> None:
    server.reply(
        Reply(
            chunks=openai_chunks(
                call_start(0, CALL_A, "bash"), arguments(0, '{"command": "ls"}'), chunk({}, "stop")
            )
        )
    )
    response = await providers.openai.complete(request(server))
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage()  # this server sent no usage chunk


async def test_short_empty_and_repeated_call_ids_are_replaced(
    server: ModelServer, providers: Providers
) -> None:
    ids = ["call_0", "", CALL_A, CALL_A]
    chunks = [
        c
        for i, call_id in enumerate(ids)
        for c in (call_start(i, call_id, "bash"), arguments(i, "{}"))
    ]
    server.reply(Reply(chunks=openai_chunks(*chunks, chunk({}, "tool_calls"))))
    response = await providers.openai.complete(request(server))

    got = [b.call_id for b in response.content if isinstance(b, ToolUseBlock)]
    assert got[2] == CALL_A  # valid and long enough: kept
    assert len(set(got)) == 4 and all(is_valid_id(i) for i in got)
    assert {got[0], got[1], got[3]}.isdisjoint(ids)


async def test_rate_limit_then_success_waits_as_asked(
    server: ModelServer, providers: Providers
) -> None:
    message = "Rate limit reached for gpt-4o-mini"
    limited = error_reply(429, "rate_limit_exceeded", message, **{"retry-after-ms": "250"})
    server.reply(limited, limited, text_turn("Hi."))
    with pytest.raises(ProviderError) as caught:
        await providers.openai.complete(request(server))
    assert str(caught.value) == f"openai: 429 rate limited (rate_limit_exceeded: {message})"
    assert caught.value.retryable and caught.value.retry_after_s == 0.25

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(attempts=3, base_delay_s=0.001, max_delay_s=8.0, timeout_s=5.0)
    response = await complete_with_retries(
        providers.openai, request(server), policy=policy, sleep=sleep
    )
    assert response.content == [TextBlock(text="Hi.")]
    assert slept == [0.25]
    assert len(server.received) == 3


async def test_server_errors_are_retried(server: ModelServer, providers: Providers) -> None:
    server.reply(
        error_reply(500, "server_error", "The server had an error"),
        Reply(status=503, body="upstream connect error"),
        text_turn("Hi."),
    )
    response = await complete_with_retries(providers.openai, request(server), policy=FAST)
    assert response.content == [TextBlock(text="Hi.")]
    assert len(server.received) == 3


async def test_an_error_chunk_mid_stream_is_retryable(
    server: ModelServer, providers: Providers
) -> None:
    error = {"error": {"message": "The server had an error", "type": "server_error"}}
    server.reply(Reply(chunks=openai_chunks(chunk({"content": "Hel"}), error, done=False)))
    with pytest.raises(ProviderError) as caught:
        await providers.openai.complete(request(server))
    assert str(caught.value) == (
        "openai: the stream broke off with an error (server_error: The server had an error)"
    )
    assert caught.value.retryable


async def test_a_malformed_response_is_retried(server: ModelServer, providers: Providers) -> None:
    server.reply(tool_turn('{"comm"'), tool_turn())  # the first one's arguments are not JSON
    with pytest.raises(ProviderError) as caught:
        await providers.openai.complete(request(server))
    assert str(caught.value).startswith(
        "openai: malformed response: the input of tool call 'bash' is not valid JSON ("
    )
    assert caught.value.retryable
    response = await complete_with_retries(providers.openai, request(server), policy=FAST)
    assert response.content[1] == ToolUseBlock(
        call_id=CALL_A, name="bash", input={"command": "sudo ls"}
    )


async def test_tool_input_nested_too_deeply_for_the_log_is_malformed(
    server: ModelServer, providers: Providers
) -> None:
    """Deep enough to break a decoder (or to be stored and then break every reader)."""
    for arguments in ('{"a":' * 5000 + "1" + "}" * 5000, '{"a":' * 100 + "1" + "}" * 100):
        server.reply(tool_turn(arguments))
        with pytest.raises(ProviderError) as caught:
            await providers.openai.complete(request(server))
        assert str(caught.value).startswith("openai: malformed response: the input of tool call")
        assert caught.value.retryable


async def test_malformed_responses_until_the_last_attempt_end_in_a_clear_failure(
    server: ModelServer, providers: Providers
) -> None:
    cut_short = openai_chunks(chunk({"content": "Let me "}), done=False)  # no finish_reason
    server.reply(tool_turn('{"comm"'), Reply(chunks=cut_short))
    policy = msgspec.structs.replace(FAST, attempts=2)
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(providers.openai, request(server), policy=policy)
    assert str(caught.value) == (
        "the model failed 2 times; last: "
        "openai: malformed response: the stream ended without a finish_reason"
    )
    assert not caught.value.retryable
    assert len(server.received) == 2


async def test_a_response_cut_by_the_length_limit_inside_a_tool_call_is_not_retried(
    server: ModelServer, providers: Providers
) -> None:
    cut = openai_chunks(call_start(0, CALL_A, "bash"), arguments(0, '{"comm'), chunk({}, "length"))
    server.reply(Reply(chunks=cut))
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(providers.openai, request(server), policy=FAST)
    assert str(caught.value) == (
        "openai: the response reached max_output_tokens (1024) inside tool call 'bash'; "
        "raise the model's max_output_tokens"
    )
    assert not caught.value.retryable and len(server.received) == 1


async def test_a_silent_server_times_out_each_attempt(
    server: ModelServer, providers: Providers
) -> None:
    slow = Reply(delay_s=5, chunks=text_turn("late").chunks)
    server.reply(slow, slow)
    policy = RetryPolicy(attempts=2, base_delay_s=0.001, max_delay_s=0.01, timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(providers.openai, request(server), policy=policy)
    assert time.monotonic() - started < 2
    assert str(caught.value) == (
        "the model failed 2 times; last: no response within 0.2s (the attempt's timeout)"
    )
    assert len(server.received) == 2


@pytest.mark.parametrize(
    ("status", "words"),
    [(400, "bad request"), (401, "unauthorized"), (403, "forbidden"), (404, "not found")],
)
async def test_client_errors_are_not_retried(
    server: ModelServer, providers: Providers, status: int, words: str
) -> None:
    server.reply(error_reply(status, "nope", "no"), text_turn("Hi."))
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(providers.openai, request(server), policy=FAST)
    assert str(caught.value) == f"openai: {status} {words} (nope: no)"
    assert not caught.value.retryable
    assert len(server.received) == 1


async def test_an_unreachable_server_is_retryable(providers: Providers) -> None:
    base_url = f"http://127.0.0.1:{unused_port()}/v1"
    spec = ModelSpec(provider="openai", name=MODEL, base_url=base_url)
    with pytest.raises(ProviderError) as caught:
        await providers.openai.complete(
            ModelRequest(session_id="ses_o", model=spec, context=CONTEXT)
        )
    assert str(caught.value).startswith(f"openai: cannot reach {base_url}")
    assert caught.value.retryable


async def test_without_a_base_url_a_key_is_required() -> None:
    spec = ModelSpec(provider="openai", name=MODEL)
    with pytest.raises(ProviderError) as caught:
        await Providers(environ={}).openai.complete(
            ModelRequest(session_id="ses_o", model=spec, context=CONTEXT)
        )
    assert str(caught.value) == "openai: no API key: OPENAI_API_KEY is not set"
    assert not caught.value.retryable


async def test_a_terse_local_server_is_understood(
    server: ModelServer, providers: Providers
) -> None:
    # No ids, indexes, timestamps, model or usage: what some local servers send.
    def bare(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"choices": [{"delta": delta, "finish_reason": finish}]}

    def fragment(function: dict[str, str]) -> dict[str, Any]:
        return bare({"tool_calls": [{"function": function}]})

    server.reply(
        Reply(
            chunks=openai_chunks(
                bare({"content": "On it."}),
                fragment({"name": "bash", "arguments": '{"command": '}),
                fragment({"arguments": '"ls"}'}),
                bare({}, "tool_calls"),
            )
        )
    )
    response = await providers.openai.complete(request(server, name="qwen3-coder:30b"))
    assert response.content[0] == TextBlock(text="On it.")
    [call] = response.content[1:]
    assert isinstance(call, ToolUseBlock) and is_valid_id(call.call_id)
    assert (call.name, call.input) == ("bash", {"command": "ls"})
    assert response.model == "qwen3-coder:30b"
    assert response.cost_usd == 0.0  # a model the price table does not know


async def test_a_server_that_repeats_the_name_in_every_chunk_and_refuses_null_content(
    server: ModelServer, providers: Providers
) -> None:
    """llama.cpp's server (llama-cpp-python) sends a call's whole name with every fragment of
    its arguments, and answers 500 to an assistant message whose content is null."""

    def repeating(arguments: str) -> dict[str, Any]:
        function = {"name": "write_file", "arguments": arguments}
        return chunk({"tool_calls": [{"index": 0, "id": CALL_A, "function": function}]})

    server.reply(
        Reply(
            chunks=openai_chunks(
                repeating('{"path": "a.txt", '),
                repeating('"content": "hi"}'),
                chunk({}, "tool_calls"),
            )
        )
    )
    response = await providers.openai.complete(request(server))
    assert response.content == [
        ToolUseBlock(call_id=CALL_A, name="write_file", input={"path": "a.txt", "content": "hi"})
    ]
    # The call sent back in the next request has an empty text, not a null one.
    server.reply(text_turn("Done."))
    follow_up = request(server)
    context = Context(
        system=follow_up.context.system,
        messages=[
            ChatMessage(role="user", content=[TextBlock(text="Write a.txt.")]),
            ChatMessage(role="assistant", content=[response.content[0]]),
            ChatMessage(
                role="user", content=[ToolResultBlock(call_id=CALL_A, output="wrote 2 bytes")]
            ),
        ],
    )
    await providers.openai.complete(msgspec.structs.replace(follow_up, context=context))
    sent = server.received[-1].body["messages"]
    assistant = [m for m in sent if m["role"] == "assistant" and m.get("tool_calls")][-1]
    assert assistant["content"] == "" and assistant["tool_calls"][0]["function"]["name"] == (
        "write_file"
    )


def test_a_name_sent_in_pieces_is_joined() -> None:
    assert _joined_name("", "write_") == "write_"
    assert _joined_name("write_", "file") == "write_file"  # pieces
    assert _joined_name("write_file", "write_file") == "write_file"  # repeated whole
    assert _joined_name("write_", "write_file") == "write_file"  # sent so far, each time
