"""The embedded backend: one SQLite file, WAL, synchronous=FULL.

SQLite has one writer at a time, so every write transaction runs whole on one writer thread
with one connection, starting with BEGIN IMMEDIATE (take the write lock up front; upgrading a
read lock mid-transaction is what deadlocks two writers); other processes on the same file
wait on busy_timeout. Reads run on a small pool of reader threads and never block the writer.

Why threads and not aiosqlite: aiosqlite hops to its thread for every statement, cursor and
fetch (~170 us each here), which made one durable append cost 4.6 ms; running the whole
transaction in one hop costs one thread wake-up on top of SQLite's own fsync. The append
itself, the hot path, skips SQLAlchemy's per-statement overhead (~0.1 ms each here) and runs
three fixed statements on the writer thread's own driver connection: the shared ones, as
SQLite's dialect compiles them once at import.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from schemas import retrying
from session_store._batch import PendingAppend, Plan, heads_of, plan_batch
from session_store._database import StoreLimits
from session_store._errors import StoreUnavailable
from session_store._resources import SqlResources
from session_store._sql import SqlSessionStore
from session_store._statements import INSERT_EVENTS, LOCK_HEADS, UPDATE_HEAD
from session_store._tables import events
from session_store._tenancy import SqlTenancy
from session_store._threads import SqlThreads
from session_store._webhooks import SqlWebhooks
from session_store._work import SqlWork

T = TypeVar("T")

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA cache_size=-65536",
    "PRAGMA temp_store=MEMORY",
)

# The fast path runs the shared statements (`_statements.py`) as SQLite's dialect compiles
# them, once, with positional parameters: the driver binds a tuple faster than a dict.
_SQLITE = sqlite.dialect()


def _compiled(
    statement: ClauseElement, column_keys: list[str] | None = None
) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]:
    """The SQL of `statement`, and what turns one row of its parameters into a tuple."""
    compiled = statement.compile(dialect=_SQLITE, column_keys=column_keys)
    assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
    return compiled.string, operator.itemgetter(*compiled.positiontup)


_INSERT_EVENTS, _event_values = _compiled(INSERT_EVENTS, [column.name for column in events.c])
_UPDATE_HEAD, _head_values = _compiled(UPDATE_HEAD)


@functools.lru_cache(maxsize=256)
def _lock_heads(count: int) -> str:
    """LOCK_HEADS for `count` sessions (no FOR UPDATE: BEGIN IMMEDIATE holds the lock)."""
    expanded = LOCK_HEADS.params(ids=[""] * count)
    return expanded.compile(dialect=_SQLITE, compile_kwargs={"render_postcompile": True}).string


class SqliteEventStore(SqlSessionStore, SqlThreads, SqlTenancy, SqlResources, SqlWork, SqlWebhooks):
    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        limits: StoreLimits | None = None,
        registry: CollectorRegistry | None = None,
        readers: int = 4,
    ) -> None:
        super().__init__(clock=clock, limits=limits, registry=registry)
        self.path = Path(path)
        self._writer = _engine(self.path, pool_size=1, begin="BEGIN IMMEDIATE")
        self._reader = _engine(self.path, pool_size=readers, begin=None)
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="keel-sqlite-writer")
        self._read_threads = ThreadPoolExecutor(readers, thread_name_prefix="keel-sqlite-reader")
        # Used only on the writer thread, so appends never interleave on it.
        self._append_connection: sqlite3.Connection | None = None

    async def _run_write(self, operation: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self._writer.begin() as conn:
                return operation(conn)

        return await asyncio.get_running_loop().run_in_executor(self._write_thread, run)

    async def _run_read(self, operation: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self._reader.connect() as conn:
                return operation(conn)

        return await asyncio.get_running_loop().run_in_executor(self._read_threads, run)

    async def _write_batch(self, batch: list[PendingAppend]) -> Plan:
        if any(pending.keyed is not None for pending in batch):
            # Keyed input (rare: HTTP retries) takes the general path, which keeps its keys.
            return await super()._write_batch(batch)
        loop = asyncio.get_running_loop()
        try:
            return await retrying(
                self.backoff,
                lambda: loop.run_in_executor(self._write_thread, self._commit_raw, batch),
                _locked,
                what="a group commit",
                on_retry=self.metrics.retried,
            )
        except sqlite3.IntegrityError as exc:
            # Impossible under BEGIN IMMEDIATE, unless the log was edited by hand.
            raise StoreUnavailable(f"the log disagrees with its head: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"database error: {exc!r}") from exc

    def _commit_raw(self, batch: list[PendingAppend]) -> Plan:
        if self._append_connection is None:
            self._append_connection = _connect(self.path)
        db = self._append_connection
        ids = sorted({pending.session_id for pending in batch})
        db.execute("BEGIN IMMEDIATE")
        try:
            heads = heads_of(db.execute(_lock_heads(len(ids)), ids))
            plan = plan_batch(batch, heads, self._clock())
            if plan.event_rows:
                db.executemany(_INSERT_EVENTS, map(_event_values, plan.event_rows))
                db.executemany(_UPDATE_HEAD, map(_head_values, plan.head_updates()))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return plan

    def _is_transient(self, exc: DBAPIError) -> bool:
        return isinstance(exc, OperationalError) and _is_busy(str(exc.orig))

    async def _close_backend(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._write_thread.shutdown)
        if self._append_connection is not None:
            self._append_connection.close()
        await loop.run_in_executor(None, self._read_threads.shutdown)
        self._writer.dispose()
        self._reader.dispose()


def _locked(exc: Exception) -> bool:
    """Another process holds the file's write lock past busy_timeout: worth another try."""
    return isinstance(exc, sqlite3.OperationalError) and _is_busy(str(exc))


def _is_busy(message: str) -> bool:
    message = message.lower()
    return "locked" in message or "busy" in message


def _configure(dbapi_connection: Any) -> None:
    # Take transaction control from the driver, so BEGIN is ours to emit.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in _PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, check_same_thread=False)
    _configure(connection)
    return connection


def _engine(path: Path, *, pool_size: int, begin: str | None) -> Engine:
    engine = create_engine(
        f"sqlite:///{path}",
        pool_size=pool_size,
        max_overflow=0,
        # A write always ends in COMMIT or ROLLBACK and reads run outside transactions, so
        # a reset on return would only cost a call.
        pool_reset_on_return=None,
        connect_args={"check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _configure(dbapi_connection)

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)

    return engine
