from __future__ import annotations

import time

import pytest

from brain.context import Context
from brain.providers import ModelRequest, ProviderError, ScriptedProvider
from brain.threads import thread_id_for
from schemas import ModelSpec, TextBlock, ToolUseBlock

SCRIPT = [
    {"text": "Let me look.", "tool_calls": [{"name": "bash", "input": {"command": "ls"}}]},
    {"text": "All done.", "latency_ms": 50, "input_tokens": 120, "output_tokens": 8},
]


def request(turn: int, script: object = SCRIPT) -> ModelRequest:
    return ModelRequest(
        session_id="ses_s",
        model=ModelSpec(provider="scripted", options={"script": script}),
        context=Context(system="", messages=[]),
        turn=turn,
    )


async def test_plays_the_turn_the_session_is_at_with_stable_call_ids() -> None:
    provider = ScriptedProvider()
    first = await provider.complete(request(0))
    assert first.stop_reason == "tool_use"
    assert first.content == [
        TextBlock(text="Let me look."),
        ToolUseBlock(call_id="ses_s:t0:0", name="bash", input={"command": "ls"}),
    ]
    assert await provider.complete(request(0)) == first  # a replay asks the same thing


async def test_latency_usage_and_streamed_deltas() -> None:
    deltas: list[str] = []
    started = time.monotonic()
    second = await ScriptedProvider().complete(request(1), on_delta=deltas.append)
    assert time.monotonic() - started >= 0.05
    assert second.stop_reason == "end_turn" and second.usage.input_tokens == 120
    assert "".join(deltas).strip() == "All done."


async def test_past_the_end_and_a_broken_script() -> None:
    ended = await ScriptedProvider().complete(request(5))
    assert ended.stop_reason == "end_turn"
    with pytest.raises(ProviderError) as caught:
        await ScriptedProvider().complete(request(0, script=[{"txt": "typo"}]))
    assert not caught.value.retryable and "txt" in str(caught.value)


async def test_an_invalid_script_is_a_clear_error_that_retrying_cannot_fix() -> None:
    with pytest.raises(ProviderError, match="invalid script turn 0") as caught:
        await ScriptedProvider().complete(request(0, script=[{"text": 3}]))
    assert not caught.value.retryable
    with pytest.raises(ProviderError, match="expected a list"):
        await ScriptedProvider().complete(request(0, script={"text": "hi"}))


async def test_a_call_input_names_a_thread_by_the_call_that_spawned_it() -> None:
    script = [
        {
            "tool_calls": [
                {
                    "name": "message_thread",
                    "input": {"thread_id": "{thread:t0:1}", "message": "see {thread:t2:0}"},
                }
            ]
        }
    ]
    [call] = (await ScriptedProvider().complete(request(0, script))).content
    assert isinstance(call, ToolUseBlock)
    assert call.input == {
        "thread_id": thread_id_for("ses_s", "ses_s:t0:1"),
        "message": f"see {thread_id_for('ses_s', 'ses_s:t2:0')}",
    }
