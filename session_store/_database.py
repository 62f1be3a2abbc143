"""One database under the store: every operation is one plain function over a SQLAlchemy
`Connection`, run whole in one hop by the backend (`_write` / `_read`). PostgreSQL runs it on
asyncpg through `run_sync`, SQLite on its own writer thread. Transient driver failures are
retried here, once for every part of the store, and every outcome is reported to `health`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import ClassVar, TypeVar

import msgspec
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from schemas import Backoff, retrying
from session_store._errors import StoreError, StoreUnavailable
from session_store._health import StoreHealth, StoreOperation
from session_store._metrics import StoreMetrics
from session_store._tables import SCHEMA_REVISION

T = TypeVar("T")


class StoreLimits(msgspec.Struct, frozen=True, kw_only=True):
    # One encoded event; tool output over this belongs in a blob (the event keeps a ref).
    max_event_bytes: int = 256 * 1024
    # Attempts for one operation when the database reports a transient failure.
    attempts: int = 5


class SqlDatabase:
    """What every part of a SQL store stands on; a backend supplies the hooks."""

    # The backend's name, as the store's metrics label it.
    backend: ClassVar[str]

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        limits: StoreLimits | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._clock = clock
        self.limits = limits or StoreLimits()
        self.backoff = Backoff(attempts=self.limits.attempts)
        self.health = StoreHealth()
        self.metrics = StoreMetrics(self.backend, registry)

    # -- backend hooks ----------------------------------------------------------------------

    async def _run_write(self, operation: Callable[[Connection], T]) -> T:
        """Run `operation` in one write transaction (committed when it returns)."""
        raise NotImplementedError

    async def _run_read(self, operation: Callable[[Connection], T]) -> T:
        """Run `operation` on a read connection; it may see a newer head than it started with."""
        raise NotImplementedError

    def _is_transient(self, exc: DBAPIError) -> bool:
        raise NotImplementedError

    async def close(self) -> None:
        """Close every connection."""
        await self._close_backend()

    async def _close_backend(self) -> None:
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------------

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; safe to call from many processes.

        A store already there never imports Alembic: that is a tenth of a second of every
        brain's start, which a brain restarted after a crash cannot spare."""
        if await self._read(_at_newest_revision):
            return
        from session_store._migrate import upgrade_to_head

        await self._write(upgrade_to_head)

    # -- running operations -----------------------------------------------------------------

    async def _write(self, operation: Callable[[Connection], T]) -> T:
        return await self._watched("write", self._run_write, operation)

    async def _read(self, operation: Callable[[Connection], T]) -> T:
        return await self._watched("read", self._run_read, operation)

    async def _watched(
        self,
        kind: StoreOperation,
        run: Callable[[Callable[[Connection], T]], Awaitable[T]],
        operation: Callable[[Connection], T],
    ) -> T:
        try:
            result = await self._retrying(run, operation)
        except StoreUnavailable as exc:
            self.health.failed(kind, exc)
            raise
        except (StoreError, IntegrityError):
            self.health.worked(kind)  # the database answered: the caller asked amiss
            raise
        self.health.worked(kind)
        return result

    async def _retrying(
        self,
        run: Callable[[Callable[[Connection], T]], Awaitable[T]],
        operation: Callable[[Connection], T],
    ) -> T:
        """Run `operation`, retrying transient database failures; conflicts are not retried.

        IntegrityError passes through for the caller to translate; any other driver error
        (or one that survives the retries) becomes StoreUnavailable.
        """
        try:
            return await retrying(
                self.backoff,
                lambda: run(operation),
                self._passing,
                what=f"the store's {_named(operation)}",
                on_retry=self.metrics.retried,
            )
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise StoreUnavailable(f"database error: {exc.orig!r}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"database unreachable: {exc!r}") from exc

    def _passing(self, exc: Exception) -> bool:
        """A failure worth another try: a transient driver error, or the network."""
        if isinstance(exc, IntegrityError):
            return False
        if isinstance(exc, DBAPIError):
            return self._is_transient(exc)
        return isinstance(exc, OSError)


def _at_newest_revision(conn: Connection) -> bool:
    try:
        revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except DBAPIError:
        return False  # a new database: no version table yet
    return revision == SCHEMA_REVISION


def _named(operation: Callable[..., object]) -> str:
    """An operation's name for a log line: its function's (`claim`), or, for a lambda, what
    it is (an operation)."""
    name = getattr(operation, "__name__", "<lambda>")
    return "operation" if name == "<lambda>" else name
