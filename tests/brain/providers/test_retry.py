from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from brain.context import Context
from brain.providers import (
    ModelRequest,
    ProviderError,
    RetryPolicy,
    ScriptedProvider,
    complete_with_retries,
)
from schemas import ModelResponse, ModelSpec, TextBlock

POLICY = RetryPolicy(attempts=4, base_delay_s=1.0, max_delay_s=3.0, timeout_s=5.0)


def request(script: list[dict[str, object]] | None = None) -> ModelRequest:
    return ModelRequest(
        session_id="ses_r",
        model=ModelSpec(options={"script": script or [{"text": "All done."}]}),
        context=Context(system="", messages=[]),
    )


class Failing:
    """Fails with the given errors, one per call, then answers like the scripted model."""

    def __init__(self, *errors: ProviderError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def complete(
        self, request: ModelRequest, on_delta: Callable[[str], None] | None = None
    ) -> ModelResponse:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return await ScriptedProvider().complete(request, on_delta)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def flaky(n: int) -> ProviderError:
    return ProviderError(f"flaky {n}", retryable=True)


async def test_retryable_errors_back_off_exponentially_with_jitter() -> None:
    provider, sleep = Failing(flaky(1), flaky(2), flaky(3)), Sleeps()
    deltas: list[str] = []
    response = await complete_with_retries(
        provider, request(), deltas.append, POLICY, sleep=sleep, rng=random.Random(7)
    )
    assert response.content == [TextBlock(text="All done.")]
    assert "".join(deltas).strip() == "All done."
    assert provider.calls == 4
    first, second, third = sleep.delays
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0 and 1.5 <= third <= 3.0  # capped at 3


async def test_a_requested_wait_is_honoured_up_to_the_cap() -> None:
    slow_down = ProviderError("429", retryable=True, retry_after_s=2.0)
    much_later = ProviderError("429", retryable=True, retry_after_s=60.0)
    sleep = Sleeps()
    await complete_with_retries(
        Failing(slow_down, much_later), request(), None, POLICY, sleep=sleep
    )
    assert sleep.delays == [2.0, 3.0]


async def test_a_final_error_is_raised_at_once() -> None:
    final = ProviderError("anthropic: 401 unauthorized", retryable=False)
    provider, sleep = Failing(flaky(1), final), Sleeps()
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(provider, request(), None, POLICY, sleep=sleep)
    assert caught.value is final
    assert provider.calls == 2 and len(sleep.delays) == 1


async def test_the_last_failure_says_how_many_attempts_and_why() -> None:
    last = ProviderError("anthropic: 529 overloaded", retryable=True)
    provider = Failing(flaky(1), flaky(2), flaky(3), last)
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(provider, request(), None, POLICY, sleep=Sleeps())
    assert str(caught.value) == "the model failed 4 times; last: anthropic: 529 overloaded"
    assert not caught.value.retryable and caught.value.__cause__ is last

    once = RetryPolicy(attempts=1)
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(Failing(flaky(1)), request(), None, once, sleep=Sleeps())
    assert str(caught.value) == "the model failed 1 time; last: flaky 1"


async def test_a_slow_model_times_out_per_attempt() -> None:
    policy = RetryPolicy(attempts=2, base_delay_s=0.001, max_delay_s=0.001, timeout_s=0.05)
    slow = request([{"text": "late", "latency_ms": 2000}])
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(ScriptedProvider(), slow, None, policy)
    assert str(caught.value) == (
        "the model failed 2 times; last: no response within 0.05s (the attempt's timeout)"
    )


async def test_a_broken_script_fails_at_once() -> None:
    sleep = Sleeps()
    with pytest.raises(ProviderError) as caught:
        await complete_with_retries(
            ScriptedProvider(), request([{"txt": "typo"}]), None, POLICY, sleep=sleep
        )
    assert not caught.value.retryable and "invalid script" in str(caught.value)
    assert sleep.delays == []


async def test_cancellation_is_not_taken_for_a_failure() -> None:
    slow = request([{"text": "late", "latency_ms": 2000}])
    task = asyncio.create_task(complete_with_retries(ScriptedProvider(), slow, None, POLICY))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
