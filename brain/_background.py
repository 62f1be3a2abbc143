"""Best-effort messages (acks, destroys, deltas, "the log grew") sent without waiting."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Final

from schemas import BackgroundTasks

# They outlive the run that sent them, so they are held here, for the whole process.
_MESSAGES: Final = BackgroundTasks(logging.getLogger("keel.brain"), "a best-effort message")


def spawn(coroutine: Coroutine[object, object, None]) -> None:
    _MESSAGES.spawn(coroutine)
