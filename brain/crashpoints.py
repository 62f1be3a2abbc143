"""Crash-recovery drills: a brain told to (`KEEL_CRASH_AT=point[:n]`) SIGKILLs itself the
n-th time it reaches `point`, so a drill can kill it at an exact step instead of hoping a
timer lands there. Unset, every check is one comparison.
"""

from __future__ import annotations

import os
import signal
from typing import Final

POINTS: Final = frozenset(
    {
        "before_model_call",
        "after_model_response",
        "after_tool_requested",
        "after_dispatched",
        "after_send",
        "after_tool_result",
        "during_snapshot",
    }
)


class Crashpoints:
    def __init__(self, spec: str | None = None) -> None:
        self.point: str | None = None
        self.remaining = 0
        if spec:
            point, _, count = spec.partition(":")
            if point not in POINTS:
                raise ValueError(f"unknown crash point {point!r}; known: {sorted(POINTS)}")
            self.point = point
            self.remaining = int(count or 1)

    def armed(self, point: str) -> bool:
        return self.point == point and self.remaining == 1

    def reach(self, point: str) -> None:
        if self.point != point:
            return
        self.remaining -= 1
        if self.remaining == 0:
            os.kill(os.getpid(), signal.SIGKILL)
