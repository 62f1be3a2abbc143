"""The one retry policy: bare first try, backoff with jitter after, loud unless told."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from schemas import BackgroundTasks, Backoff, retrying

FAST = Backoff(attempts=4, first_s=0.001, max_s=0.004, jitter_s=0.001, factor=2.0)


class Passing(Exception):
    pass


def failing(times: int, error: Exception):  # type: ignore[no-untyped-def]
    calls: list[float] = []

    async def call() -> str:
        calls.append(time.monotonic())
        if len(calls) <= times:
            raise error
        return "done"

    return call, calls


async def test_a_passing_failure_is_tried_again_until_it_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="keel.retry")
    call, calls = failing(2, Passing("busy"))
    retries: list[None] = []
    result = await retrying(
        FAST,
        call,
        lambda e: isinstance(e, Passing),
        what="the test call",
        on_retry=lambda: retries.append(None),
    )
    assert result == "done" and len(calls) == 3
    assert len(retries) == 2  # what a metric of retries counts
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert caplog.records[0].getMessage() == (
        "the test call failed (Passing('busy')); trying again (attempt 2)"
    )


async def test_other_failures_raise_at_once_and_the_last_passing_one_when_tries_run_out() -> None:
    call, calls = failing(1, ValueError("bad"))
    with pytest.raises(ValueError):
        await retrying(FAST, call, lambda e: isinstance(e, Passing), what="x")
    assert len(calls) == 1
    call, calls = failing(10, Passing("still busy"))
    with pytest.raises(Passing):
        await retrying(FAST, call, lambda e: isinstance(e, Passing), what="x")
    assert len(calls) == 4


async def test_retries_of_an_announced_outage_are_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="keel.retry")
    call, _ = failing(2, Passing("down"))
    await retrying(FAST, call, lambda e: True, what="x", quiet=lambda _: True)
    assert {r.levelname for r in caplog.records} == {"DEBUG"}


async def test_without_a_limit_it_tries_until_it_works() -> None:
    forever = Backoff(attempts=None, first_s=0.001, max_s=0.002, jitter_s=0.0)
    call, calls = failing(20, Passing("down"))
    assert await retrying(forever, call, lambda e: True, what="x") == "done"
    assert len(calls) == 21


async def test_a_background_task_that_fails_is_logged_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks(logging.getLogger("keel.test"), "a test task")

    async def boom() -> None:
        raise RuntimeError("no")

    async def forever() -> None:
        await asyncio.sleep(3600)

    failed = tasks.spawn(boom())
    waiting = tasks.spawn(forever())
    await asyncio.gather(failed, return_exceptions=True)
    await asyncio.sleep(0)
    [record] = caplog.records
    assert record.levelname == "WARNING" and record.getMessage() == (
        "a test task failed: RuntimeError('no')"
    )
    await tasks.cancel()
    assert waiting.cancelled()
