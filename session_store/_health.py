"""Whether the store's reads and writes work, as its own operations find out.

An outage shows in the log as one line when it starts and one when it ends (logger
`keel.store`), not a line per failed operation; processes read `up()` to say less about each
failure the store has already announced, and the gateway exports it as a metric.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

log = logging.getLogger("keel.store")

StoreOperation = Literal["read", "write"]

# How long operations must work with no failure before an outage is over.
SETTLE_S: Final = 3.0


class StoreHealth:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, settle_s: float = SETTLE_S
    ) -> None:
        self._clock = clock
        self._settle_s = settle_s
        self._failing: dict[StoreOperation, _Outage] = {}

    def up(self, kind: StoreOperation) -> bool:
        return kind not in self._failing

    def worked(self, kind: StoreOperation) -> None:
        outage = self._failing.get(kind)
        if outage is None:
            return
        now = self._clock()
        # A full disk lets some writes through (those that fit in pages already there):
        # the store is back once it has worked for a while with no failure.
        if now - outage.last_failed < self._settle_s:
            return
        del self._failing[kind]
        log.warning(
            "the store takes %ss again, after %.1f s unavailable (%d operations failed)",
            kind,
            outage.last_failed - outage.since,
            outage.failures,
        )

    def failed(self, kind: StoreOperation, error: Exception) -> None:
        now = self._clock()
        outage = self._failing.get(kind)
        if outage is not None:
            outage.failures += 1
            outage.last_failed = now
            return
        self._failing[kind] = _Outage(since=now, last_failed=now)
        log.warning(
            "the store is unavailable for %ss (%s): %s wait and are retried until it is back",
            kind,
            error,
            "writes" if kind == "write" else "reads",
        )


@dataclass
class _Outage:
    since: float
    last_failed: float
    failures: int = 1
