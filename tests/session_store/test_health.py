"""The store's own view of an outage: announced once when it starts, once when it ends."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from session_store import StoreHealth, StoreUnavailable


def test_an_outage_is_one_line_when_it_starts_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    pending: list[Callable[[], None]] = []
    health = StoreHealth(
        clock=lambda: now[0], settle_s=3.0, later=lambda _, callback: pending.append(callback)
    )
    caplog.set_level(logging.DEBUG, logger="keel.store")
    health.worked("write")
    assert health.up("write") and not caplog.records
    for _ in range(25):
        health.failed("write", StoreUnavailable("database or disk is full"))
        assert not health.up("write")
        now[0] += 0.5
        health.worked("write")  # a full disk lets a write through now and then...
        assert health.up("write")  # (what the gauge shows follows every operation)
        now[0] += 0.5
    for settled in pending[:-1]:
        settled()  # ...so each end announced before a failure is void
    assert health.up("read")
    pending[-1]()  # writes have worked for the settling time, with no failure
    assert health.up("write")
    assert [r.getMessage() for r in caplog.records] == [
        "the store is unavailable for writes (database or disk is full): writes wait and are "
        "retried until it is back",
        "the store takes writes again, after 24.0 s unavailable (25 operations failed)",
    ]
