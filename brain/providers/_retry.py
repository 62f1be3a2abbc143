"""Retries around any provider: a timeout per attempt, backoff with jitter, a clear last word.

Only retryable `ProviderError`s (rate limits, overload, server errors, broken connections,
malformed responses) and attempts that run out of time are tried again; anything else is
raised at once. The SDKs are built with no retries of their own, so this is the one policy.

Text deltas of a failed attempt have already gone to `on_delta`; a retry streams its own from
the start, so a live listener should expect a response to begin again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec

from brain.providers._base import ModelProvider, ModelRequest, ProviderError
from schemas import ModelResponse, setting

log = logging.getLogger(__name__)


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    attempts: Annotated[
        int, setting("KEEL_MODEL_ATTEMPTS", "tries of a model call before the session fails")
    ] = 4
    base_delay_s: Annotated[
        float, setting("KEEL_MODEL_RETRY_DELAY_S", "the first wait between model call tries")
    ] = 0.5
    max_delay_s: Annotated[
        float, setting("KEEL_MODEL_MAX_DELAY_S", "the longest wait between model call tries")
    ] = 8.0
    timeout_s: Annotated[
        float,
        setting("KEEL_MODEL_TIMEOUT_S", "one model call's time, its whole streamed response"),
    ] = 300.0

    def delay_s(self, failures: int, retry_after_s: float | None, rng: random.Random) -> float:
        """The wait after the `failures`-th failed attempt: what the server asked for, or
        exponential backoff with jitter (between half and all of it); never over max_delay_s."""
        if retry_after_s is not None:
            return min(retry_after_s, self.max_delay_s)
        ceiling = min(self.base_delay_s * 2 ** (failures - 1), self.max_delay_s)
        return rng.uniform(ceiling / 2, ceiling)


async def complete_with_retries(
    provider: ModelProvider,
    request: ModelRequest,
    on_delta: Callable[[str], None] | None = None,
    policy: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen, so sharing it is safe)
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> ModelResponse:
    """`provider.complete` under `policy`.

    Raises the first non-retryable ProviderError as it is, or, once every attempt failed, a
    ProviderError (not retryable) that says how many and why the last one did.
    """
    rng = rng or random.Random()
    attempts = max(policy.attempts, 1)
    for attempt in range(1, attempts + 1):
        try:
            async with asyncio.timeout(policy.timeout_s):
                return await provider.complete(request, on_delta)
        except TimeoutError:
            error = ProviderError(
                f"no response within {policy.timeout_s:g}s (the attempt's timeout)",
                retryable=True,
            )
        except ProviderError as exc:
            if not exc.retryable:
                raise
            error = exc
        if attempt == attempts:
            times = "time" if attempts == 1 else "times"
            raise ProviderError(
                f"the model failed {attempts} {times}; last: {error}", retryable=False
            ) from error
        delay = policy.delay_s(attempt, error.retry_after_s, rng)
        log.warning(
            "session %s: model attempt %d of %d failed (%s); retrying in %.2fs",
            request.session_id,
            attempt,
            attempts,
            error,
            delay,
        )
        await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
