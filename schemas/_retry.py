"""How keel retries a failure that will pass: one policy for every loop that waits it out.

Exponential backoff with jitter, from `stamina` (so many processes retrying the same
outage do not retry in step). The first try runs bare: the retry machinery costs about
50 us, a tenth of a durable append, and most calls never need it. Each retry is logged
under `keel.retry` with what was retried and why, at WARNING unless the caller says the
cause was announced already (an outage the store or the NATS link has logged once).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import stamina
import stamina.instrumentation

T = TypeVar("T")

log = logging.getLogger("keel.retry")

# keel logs its retries itself, with what was retried; stamina's own hooks would log them
# again, without it, and count them in the default Prometheus registry.
stamina.instrumentation.set_on_retry_hooks(())


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    # Tries in all, the first included; None: until it works (or `timeout_s` passes).
    attempts: int | None = 5
    first_s: float = 0.01
    max_s: float = 1.0
    # Up to this much more, at random, on every wait.
    jitter_s: float = 0.01
    # Each wait is this many times the one before (until `max_s`).
    factor: float = 4.0
    timeout_s: float | None = None


async def retrying(
    backoff: Backoff,
    call: Callable[[], Awaitable[T]],
    transient: Callable[[Exception], bool],
    *,
    what: str,
    quiet: Callable[[Exception], bool] = lambda _: False,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """`await call()`, again after a backoff while it fails with an error `transient` says
    will pass. Other errors raise at once; the last transient one raises when the attempts
    or the time run out. `on_retry` is told of each try after the first (a metric)."""
    try:
        return await call()
    except Exception as exc:
        if not transient(exc) or backoff.attempts == 1:
            raise
        failure = exc
    await asyncio.sleep(backoff.first_s + random.uniform(0, backoff.jitter_s))
    retries = stamina.retry_context(
        on=transient,
        attempts=None if backoff.attempts is None else backoff.attempts - 1,
        timeout=backoff.timeout_s,
        wait_initial=backoff.first_s * backoff.factor,
        wait_max=backoff.max_s,
        wait_jitter=backoff.jitter_s,
        wait_exp_base=backoff.factor,
    )
    async for attempt in retries:
        log.log(
            logging.DEBUG if quiet(failure) else logging.WARNING,
            "%s failed (%r); trying again (attempt %d)",
            what,
            failure,
            attempt.num + 1,
        )
        if on_retry is not None:
            on_retry()
        with attempt:
            try:
                return await call()
            except Exception as exc:
                failure = exc
                raise
    raise AssertionError("stamina ends its loop by returning or raising")
