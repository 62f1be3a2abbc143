"""Whether the store's reads and writes work, as its own operations find out.

An outage shows in the log as one line when it starts and one when it ends (logger
`keel.store`), not a line per failed operation; processes read `up()` to say less about each
failure the store has already announced, and the gateway exports it as a metric.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

log = logging.getLogger("keel.store")

StoreOperation = Literal["read", "write"]


class StoreHealth:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Per kind: since when it fails, how many operations failed, the first error.
        self._failing: dict[StoreOperation, tuple[float, int, str]] = {}

    def up(self, kind: StoreOperation) -> bool:
        return kind not in self._failing

    def worked(self, kind: StoreOperation) -> None:
        failing = self._failing.pop(kind, None)
        if failing is not None:
            since, failures, _ = failing
            log.warning(
                "the store takes %ss again, after %.1f s unavailable (%d operations failed)",
                kind,
                self._clock() - since,
                failures,
            )

    def failed(self, kind: StoreOperation, error: Exception) -> None:
        failing = self._failing.get(kind)
        if failing is None:
            self._failing[kind] = (self._clock(), 1, str(error))
            log.warning(
                "the store is unavailable for %ss (%s): %s wait and are retried until it is back",
                kind,
                error,
                "writes" if kind == "write" else "reads",
            )
        else:
            since, failures, first = failing
            self._failing[kind] = (since, failures + 1, first)
