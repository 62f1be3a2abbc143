"""Crash-recovery drills: a process told to (`KEEL_CRASH_AT=point[:n]`) SIGKILLs itself the
n-th time it reaches `point`, so a drill kills it at an exact step instead of hoping a timer
lands there. Unset, every check is one comparison. Each process names its own points.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Set


class Crashpoints:
    def __init__(self, spec: str | None = None, points: Set[str] = frozenset()) -> None:
        self.point: str | None = None
        self.remaining = 0
        if spec:
            point, _, count = spec.partition(":")
            if point not in points:
                raise ValueError(f"unknown crash point {point!r}; known: {sorted(points)}")
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
