"""Group commit, the queue: appends wait, and one flusher commits all that are queued in one
transaction, then settles each caller with its own outcome.

Which queued appends commit is decided by `_batch.py` (pure); the transaction is the
backend's (`SqlAppends._write_batch`, or SQLite's fast path).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import IntegrityError

from session_store._batch import PendingAppend, Plan
from session_store._errors import StoreError, StoreUnavailable
from session_store._health import StoreHealth
from session_store._metrics import StoreMetrics
from session_store._records import Appended

# Commits one batch in one transaction and says what became of each append in it.
WriteBatch = Callable[[list[PendingAppend]], Awaitable[Plan]]


class GroupCommit:
    """The queued appends and the one task that commits them."""

    def __init__(self, write_batch: WriteBatch, health: StoreHealth, metrics: StoreMetrics) -> None:
        self._write_batch = write_batch
        self._health = health
        self._metrics = metrics
        self._pending: list[PendingAppend] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, pending: PendingAppend) -> Appended:
        """Queue `pending`; returns once its batch committed, or raises why it did not."""
        self._pending.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        # Cancelling the caller cancels `pending.future`: if its batch was not taken yet, the append
        # is dropped; if it was, the append commits or fails without anyone waiting for it.
        return await pending.future

    async def drain(self) -> None:
        """Wait until every queued append is settled."""
        if self._flusher is not None:
            await self._flusher

    async def _flush(self) -> None:
        """Group commit: while appends are queued, commit all of them in one transaction.

        Appends that arrive during a commit form the next batch, so under load each fsync
        carries many appends, and an idle store commits a lone append at once.
        """
        try:
            while self._pending:
                batch = [p for p in self._pending if not p.future.cancelled()]
                self._pending = []
                if batch:
                    await self._commit(batch)
        except asyncio.CancelledError:
            batch, self._pending = self._pending, []
            _fail_all(batch, StoreUnavailable("the store is shutting down"))
            raise

    async def _commit(self, batch: list[PendingAppend]) -> None:
        """Commit `batch` and settle every future in it, whatever happens."""
        started = time.perf_counter()
        try:
            plan = await self._write_batch(batch)
        except IntegrityError as exc:
            # Impossible while the head rows are locked, unless the log was edited by hand.
            _fail_all(batch, StoreUnavailable(f"the log disagrees with its head: {exc.orig}"))
        except StoreError as exc:
            if isinstance(exc, StoreUnavailable):
                self._health.failed("write", exc)
            _fail_all(batch, exc)
        except asyncio.CancelledError:
            _fail_all(batch, StoreUnavailable("the store is shutting down"))
            raise
        except Exception as exc:
            # A bug fails this batch's appends; it must not strand the appends queued after it.
            _fail_all(batch, StoreUnavailable(f"append failed: {exc!r}"))
        else:
            self._health.worked("write")
            # Committed batches only: a failed one's time says nothing of the disk.
            self._metrics.commit_seconds.observe(time.perf_counter() - started)
            self._metrics.commit_appends.observe(len(batch))
            for pending, appended in plan.accepted:
                if not pending.future.done():
                    pending.future.set_result(appended)
            for pending, error in plan.rejected:
                if not pending.future.done():
                    pending.future.set_exception(error)


def _fail_all(batch: list[PendingAppend], error: StoreError) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)
