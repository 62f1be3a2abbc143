"""Tasks a process starts and does not wait for: held until done (the event loop keeps only
weak references to tasks, so an unheld one can vanish mid-way), and each failure logged at
WARNING with its traceback, so nothing fails unseen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
# A task still running this long after it was cancelled is cancelled again.
_CANCEL_AGAIN_S = 0.5


async def run_to_end(coroutine: Coroutine[Any, Any, T]) -> T:
    """Await `coroutine` to its end however often the caller is cancelled meanwhile: cleanup
    that must not be cut short (removing a half-made sandbox), in a process that cancels its
    tasks again and again while it closes (`BackgroundTasks.cancel`). The caller's cancel is
    its own to raise afterwards."""
    task = asyncio.ensure_future(coroutine)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
    return task.result()


class BackgroundTasks:
    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        # What the tasks are, for the log line of one that fails.
        self.what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.log.warning("%s failed: %r", self.what, error, exc_info=error)

    async def cancel(self) -> None:
        """Cancel every task still running, and wait until they have all ended. Again and
        again: a task may spawn another meanwhile (a work loop handing on what it fetched),
        and a library call may swallow a cancel (a NATS fetch) and go on."""
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=_CANCEL_AGAIN_S)
