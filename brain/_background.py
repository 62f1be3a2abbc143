"""Best-effort messages (acks, destroys, deltas, "the log grew") sent without waiting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Final

log = logging.getLogger("keel.brain")

# Best-effort messages (acks, destroys, deltas) outlive the run that sent them; the loop
# keeps only weak references to tasks, so they are held here until done.
_BACKGROUND: Final[set[asyncio.Future[None]]] = set()


def spawn(coroutine: Coroutine[object, object, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    task.add_done_callback(_ignore_failure)


def _ignore_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("best-effort message failed: %s", task.exception())
