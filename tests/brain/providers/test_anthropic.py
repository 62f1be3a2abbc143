from __future__ import annotations

import re
import time
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
from schemas import ModelSpec, TextBlock, ToolResultBlock, ToolUseBlock, Usage, is_valid_id
from tests.brain.providers.conversation import (
    BASH,
    CONTEXT,
    FAST,
    KEY,
    KEY_ENV,
    PRIOR_ID,
    unused_port,
)
from tests.brain.providers.model_server import ModelServer, Reply, anthropic_events

MODEL = "claude-sonnet-4-6"
TOOL_ID = "toolu_01A09q90qw90lq917835lq9"


def request(server: ModelServer, context: Context = CONTEXT, **spec: Any) -> ModelRequest:
    model = ModelSpec(
        provider="anthropic",
        name=MODEL,
        max_output_tokens=1024,
        temperature=0.2,
        base_url=server.url,
        options={"api_key_env": KEY_ENV},
    )
    return ModelRequest(
        session_id="ses_a",
        model=msgspec.structs.replace(model, **spec),
        context=context,
        tools=[BASH],
    )


def start(model: str = "claude-sonnet-4-6-20260101") -> dict[str, Any]:
    usage = {
        "input_tokens": 1200,
        "output_tokens": 1,
        "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 50,
    }
    return {
        "type": "message_start",
        "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        },
    }


def text_block(index: int, *parts: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        },
        {"type": "ping"},
        *(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": p},
            }
            for p in parts
        ),
        {"type": "content_block_stop", "index": index},
    ]


def tool_block(
    index: int, call_id: str, *json_parts: str, name: str = "bash"
) -> list[dict[str, Any]]:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": p},
            }
            for p in ("", *json_parts)
        ),
        {"type": "content_block_stop", "index": index},
    ]


def end(stop_reason: str = "tool_use", output_tokens: int = 42) -> list[dict[str, Any]]:
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


def turn(*json_parts: str) -> Reply:
    parts = json_parts or ('{"comm', 'and": "sud', 'o ls"}')
    return Reply(
        chunks=anthropic_events(
            start(),
            *text_block(0, "Let me ", "look ", "again."),
            *tool_block(1, TOOL_ID, *parts),
            *end(),
        )
    )


def error_reply(status: int, kind: str, message: str, **headers: str) -> Reply:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}
    return Reply(status=status, body=body, headers=headers)


async def test_streams_text_and_a_tool_call_and_maps_the_conversation(
    server: ModelServer, providers: Providers
) -> None:
    server.reply(turn())
    deltas: list[str] = []
    response = await providers.anthropic.complete(request(server), on_delta=deltas.append)

    assert deltas == ["Let me ", "look ", "again."]
    assert response.content == [
        TextBlock(text="Let me look again."),
        ToolUseBlock(call_id=TOOL_ID, name="bash", input={"command": "sudo ls"}),
    ]
    assert response.stop_reason == "tool_use"
    assert response.model == "claude-sonnet-4-6-20260101"
    assert response.usage == Usage(
        input_tokens=1200, output_tokens=42, cache_read_tokens=300, cache_write_tokens=50
    )
    # claude-sonnet-4.x: $3 input, $15 output, $0.30 cache read, $3.75 cache write per MTok.
    assert response.cost_usd == pytest.approx((1200 * 3 + 42 * 15 + 300 * 0.3 + 50 * 3.75) / 1e6)
    assert response.duration_ms > 0

    [sent] = server.received
    assert sent.path == "/v1/messages"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["anthropic-version"]
    # No temperature: API version 2026-10-21 (the SDK's) rejects sampling parameters.
    assert sent.body == {
        "model": MODEL,
        "max_tokens": 1024,
        "stream": True,
        "system": "You are a careful engineer.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "List the files."}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Looking."},
                    {
                        "type": "tool_use",
                        "id": PRIOR_ID,
                        "name": "bash",
                        "input": {"command": "ls"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": PRIOR_ID,
                        "content": "permission denied",
                        "is_error": True,
                    },
                    {"type": "text", "text": "Try with sudo."},
                ],
            },
        ],
        "tools": [
            {
                "name": "bash",
                "description": "Run a shell command.",
                "input_schema": BASH.input_schema,
            }
        ],
    }


async def test_call_ids_the_api_would_refuse_are_sent_as_a_stable_digest(
    server: ModelServer, providers: Providers
) -> None:
    scripted_id = "ses_a:t0:0"  # a call the scripted model made before the session switched
    context = Context(
        system="",
        messages=[
            ChatMessage(role="user", content=[TextBlock(text="Go.")]),
            ChatMessage(role="assistant", content=[ToolUseBlock(call_id=scripted_id, name="bash")]),
            ChatMessage(role="user", content=[ToolResultBlock(call_id=scripted_id)]),
        ],
    )
    server.reply(turn(), turn())
    await providers.anthropic.complete(request(server, context=context))
    await providers.anthropic.complete(request(server, context=context))

    sent_ids = set()
    for sent in server.received:
        assert "system" not in sent.body  # an empty system prompt is left out
        use, result = sent.body["messages"][1]["content"][0], sent.body["messages"][2]["content"][0]
        assert use["id"] == result["tool_use_id"] != scripted_id
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", use["id"])
        assert result == {"type": "tool_result", "tool_use_id": use["id"]}
        sent_ids.add(use["id"])
    assert len(sent_ids) == 1  # the same on every turn


async def test_short_invalid_and_repeated_call_ids_are_replaced(
    server: ModelServer, providers: Providers
) -> None:
    ids = ["toolu_1", "toolu with a space in it", TOOL_ID, TOOL_ID]
    blocks = [
        e for i, call_id in enumerate(ids) for e in tool_block(i, call_id, '{"command": "ls"}')
    ]
    server.reply(Reply(chunks=anthropic_events(start(), *blocks, *end())))
    response = await providers.anthropic.complete(request(server))

    got = [b.call_id for b in response.content if isinstance(b, ToolUseBlock)]
    assert got[2] == TOOL_ID  # valid and long enough: kept
    assert len(set(got)) == 4 and all(is_valid_id(i) for i in got)
    assert {got[0], got[1], got[3]}.isdisjoint(ids)


async def test_rate_limit_says_so_and_when_to_come_back(
    server: ModelServer, providers: Providers
) -> None:
    message = "Number of request tokens has exceeded your per-minute rate limit"
    server.reply(error_reply(429, "rate_limit_error", message, **{"retry-after": "3"}))
    with pytest.raises(ProviderError) as caught:
        await providers.anthropic.complete(request(server))
    assert str(caught.value) == f"anthropic: 429 rate limited (rate_limit_error: {message})"
    assert caught.value.retryable and caught.value.retry_after_s == 3.0
    assert len(server.received) == 1  # the SDK did not retry on its own


async def test_rate_limit_then_success_waits_as_asked(
    server: ModelServer, providers: Providers
) -> None:
    server.reply(error_reply(429, "rate_limit_error", "slow down", **{"retry-after": "3"}), turn())
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(attempts=3, base_delay_s=0.001, max_delay_s=8.0, timeout_s=5.0)
    response = await complete_with_retries(
        providers.anthropic, request(server), policy=policy, sleep=sleep
    )
    assert response.stop_reason == "tool_use"
    assert len(server.received) == 2
    assert slept == [3.0]


async def test_server_errors_and_overload_are_retried(
    server: ModelServer, providers: Providers
) -> None:
    server.reply(
        error_reply(500, "api_error", "Internal server error"),
        error_reply(529, "overloaded_error", "Overloaded"),
        turn(),
    )
    response = await complete_with_retries(providers.anthropic, request(server), policy=FAST)
    assert response.content[0] == TextBlock(text="Let me look again.")
    assert len(server.received) == 3


async def test_overload_reads_clearly(server: ModelServer, providers: Providers) -> None:
    server.reply(error_reply(529, "overloaded_error", "Overloaded"))
    with pytest.raises(ProviderError) as caught:
        await providers.anthropic.complete(request(server))
    assert str(caught.value) == "anthropic: 529 overloaded (overloaded_error: Overloaded)"
    assert caught.value.retryable


async def test_an_error_event_mid_stream_is_retryable(
    server: ModelServer, providers: Providers
) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server.reply(Reply(chunks=anthropic_events(start(), *text_block(0, "Hal"), overloaded)), turn())
    with pytest.raises(ProviderError) as caught:
        await providers.anthropic.complete(request(server))
    assert str(caught.value) == (
        "anthropic: the stream broke off with an error (overloaded_error: Overloaded)"
    )
    assert caught.value.retryable
    assert (await providers.anthropic.complete(request(server))).stop_reason == "tool_use"


async def test_a_malformed_response_is_retried(server: ModelServer, providers: Providers) -> None:
    server.reply(turn('{"command": "ls"'), turn())  # the first one's input JSON is cut short
    with pytest.raises(ProviderError) as caught:
        await providers.anthropic.complete(request(server))
    assert str(caught.value).startswith(
        "anthropic: malformed response: the input of tool call 'bash' is not valid JSON ("
    )
    assert caught.value.retryable
    response = await complete_with_retries(providers.anthropic, request(server), policy=FAST)
    assert response.content[1] == ToolUseBlock(
        call_id=TOOL_ID, name="bash", input={"command": "sudo ls"}
    )


async def test_malformed_responses_until_the_last_attempt_end_in_a_clear_failure(
    server: ModelServer, providers: Providers
) -> None:
    truncated = anthropic_events(start(), *text_block(0, "Let me "))  # no message_stop
    server.reply(turn('{"command": "ls"'), Reply(chunks=truncated))
    policy = msgspec.structs.replace(FAST, attempts=2)
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(providers.anthropic, request(server), policy=policy)
    assert str(caught.value) == (
        "the model failed 2 times; last: "
        "anthropic: malformed response: the stream ended before message_stop"
    )
    assert not caught.value.retryable
    assert len(server.received) == 2


async def test_a_response_cut_by_max_tokens_inside_a_tool_call_is_not_retried(
    server: ModelServer, providers: Providers
) -> None:
    cut = anthropic_events(start(), *tool_block(0, TOOL_ID, '{"command": "l'), *end("max_tokens"))
    server.reply(Reply(chunks=cut))
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(providers.anthropic, request(server), policy=FAST)
    assert str(caught.value) == (
        "anthropic: the response reached max_output_tokens (1024) inside tool call 'bash'; "
        "raise the model's max_output_tokens"
    )
    assert not caught.value.retryable and len(server.received) == 1


async def test_a_silent_server_times_out_each_attempt(
    server: ModelServer, providers: Providers
) -> None:
    server.reply(Reply(delay_s=5, chunks=turn().chunks), Reply(delay_s=5, chunks=turn().chunks))
    policy = RetryPolicy(attempts=2, base_delay_s=0.001, max_delay_s=0.01, timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(providers.anthropic, request(server), policy=policy)
    assert time.monotonic() - started < 2
    assert str(caught.value) == (
        "the model failed 2 times; last: no response within 0.2s (the attempt's timeout)"
    )
    assert len(server.received) == 2


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (400, "invalid_request_error", "bad request"),
        (401, "authentication_error", "unauthorized"),
        (403, "permission_error", "forbidden"),
        (404, "not_found_error", "not found"),
    ],
)
async def test_client_errors_are_not_retried(
    server: ModelServer, providers: Providers, status: int, kind: str, words: str
) -> None:
    server.reply(error_reply(status, kind, "no"), turn())
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(providers.anthropic, request(server), policy=FAST)
    assert str(caught.value) == f"anthropic: {status} {words} ({kind}: no)"
    assert not caught.value.retryable
    assert len(server.received) == 1


async def test_an_unreachable_server_is_retryable(providers: Providers) -> None:
    port = unused_port()
    spec = ModelSpec(provider="anthropic", name=MODEL, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderError) as caught:
        await providers.anthropic.complete(
            ModelRequest(session_id="ses_a", model=spec, context=CONTEXT)
        )
    assert str(caught.value).startswith(f"anthropic: cannot reach http://127.0.0.1:{port}")
    assert caught.value.retryable


async def test_a_missing_key_is_reported_before_any_request(server: ModelServer) -> None:
    providers = Providers(environ={})
    spec = ModelSpec(provider="anthropic", name=MODEL)
    with pytest.raises(ProviderError) as caught:
        await providers.anthropic.complete(
            ModelRequest(session_id="ses_a", model=spec, context=CONTEXT)
        )
    assert str(caught.value) == "anthropic: no API key: ANTHROPIC_API_KEY is not set"
    assert not caught.value.retryable
    assert server.received == []


async def test_the_key_comes_from_the_variable_the_model_names(server: ModelServer) -> None:
    providers = Providers(environ={"ROUTED_KEY": "sk-routed", KEY_ENV: KEY})
    try:
        server.reply(turn())
        # The spec's api_key_env wins over the options' and over ANTHROPIC_API_KEY.
        await providers.anthropic.complete(request(server, api_key_env="ROUTED_KEY"))
    finally:
        await providers.aclose()
    assert server.received[0].headers["authorization"] == "Bearer sk-routed"


async def test_a_named_key_variable_that_is_unset_is_a_final_error(server: ModelServer) -> None:
    providers = Providers(environ={KEY_ENV: KEY})
    with pytest.raises(ProviderError) as caught:
        await providers.anthropic.complete(request(server, api_key_env="ROUTED_KEY"))
    assert str(caught.value) == "anthropic: no API key: ROUTED_KEY is not set"
    assert not caught.value.retryable
    assert server.received == []


async def test_clients_are_kept_per_base_url_and_key(
    server: ModelServer, providers: Providers
) -> None:
    client = providers.anthropic.client_for(server.url, "k1")
    assert providers.anthropic.client_for(server.url, "k1") is client
    assert providers.anthropic.client_for(server.url, "k2") is not client
    assert providers.anthropic.client_for(None, "k1") is not client


async def test_thinking_blocks_and_unknown_events_deltas_and_blocks_are_skipped(
    server: ModelServer, providers: Providers
) -> None:
    thinking = {"type": "thinking", "thinking": "", "signature": ""}
    events = anthropic_events(
        start(),
        {"type": "content_block_start", "index": 0, "content_block": thinking},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Hmm."},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "a_future_event", "detail": {"anything": True}},
        *text_block(1, "Done.")[:-1],
        {"type": "content_block_delta", "index": 1, "delta": {"type": "a_future_delta"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "a_future_block"}},
        {"type": "content_block_stop", "index": 2},
        *end("end_turn", output_tokens=7),
    )
    server.reply(Reply(chunks=events))
    deltas: list[str] = []
    response = await providers.anthropic.complete(request(server), on_delta=deltas.append)
    assert response.content == [TextBlock(text="Done.")]
    assert deltas == ["Done."]
    assert response.stop_reason == "end_turn" and response.usage.output_tokens == 7
