"""Whether the store's reads and writes work, as its own operations find out.

An outage shows in the log as one line when it starts and one when it ends (logger
`keel.store`), not a line per failed operation; processes read `up()` to say less about each
failure the store has already announced, and the gateway exports it as a metric.

`up()` follows every operation at once. The end of an outage is announced only once
operations have worked for `settle_s` with no failure, since a full disk lets some writes
through: a failure before then continues the same outage, with no new line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

log = logging.getLogger("keel.store")

StoreOperation = Literal["read", "write"]
# Runs a callback after a delay (in seconds); asyncio's loop by default.
Later = Callable[[float, Callable[[], None]], object]

SETTLE_S: Final = 3.0


@dataclass
class _Outage:
    since: float
    last_failed: float
    failures: int = 1
    failing: bool = True
    # Bumped by every change: an announcement of the end made before a later change is void.
    generation: int = 0


class StoreHealth:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        settle_s: float = SETTLE_S,
        later: Later | None = None,
    ) -> None:
        self._clock = clock
        self._settle_s = settle_s
        self._later = later or _call_later
        self._outages: dict[StoreOperation, _Outage] = {}

    def up(self, kind: StoreOperation) -> bool:
        outage = self._outages.get(kind)
        return outage is None or not outage.failing

    def worked(self, kind: StoreOperation) -> None:
        outage = self._outages.get(kind)
        if outage is None or not outage.failing:
            return
        outage.failing = False
        outage.generation += 1
        generation = outage.generation
        self._later(self._settle_s, lambda: self._end(kind, outage, generation))

    def failed(self, kind: StoreOperation, error: Exception) -> None:
        now = self._clock()
        outage = self._outages.get(kind)
        if outage is not None:
            outage.failures += 1
            outage.last_failed = now
            outage.failing = True
            outage.generation += 1  # it goes on: an end announced meanwhile is void
            return
        self._outages[kind] = _Outage(since=now, last_failed=now)
        log.warning(
            "the store is unavailable for %ss (%s): %s wait and are retried until it is back",
            kind,
            error,
            "writes" if kind == "write" else "reads",
        )

    def _end(self, kind: StoreOperation, outage: _Outage, generation: int) -> None:
        if self._outages.get(kind) is not outage or outage.generation != generation:
            return
        del self._outages[kind]
        log.warning(
            "the store takes %ss again, after %.1f s unavailable (%d operations failed)",
            kind,
            outage.last_failed - outage.since,
            outage.failures,
        )


def _call_later(delay: float, callback: Callable[[], None]) -> object:
    try:
        return asyncio.get_running_loop().call_later(delay, callback)
    except RuntimeError:  # no event loop (a synchronous caller): say it at once
        callback()
        return None
