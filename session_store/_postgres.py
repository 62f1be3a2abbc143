"""The scale-out backend: PostgreSQL through asyncpg.

Appends lock their sessions' head rows (SELECT ... FOR UPDATE, in id order so two batches
never deadlock), so fencing holds across any number of processes and hosts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TypeVar

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from session_store._database import StoreLimits
from session_store._resources import SqlResources
from session_store._sql import SqlSessionStore
from session_store._tenancy import SqlTenancy
from session_store._threads import SqlThreads
from session_store._webhooks import SqlWebhooks
from session_store._work import SqlWork

T = TypeVar("T")

# serialization_failure, deadlock_detected, lock_not_available, admin_shutdown,
# cannot_connect_now, and the connection-exception class.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P03"})

# A client frozen inside a transaction (SIGSTOP, a paused VM) keeps its row locks, and with
# them every session it was writing, until it resumes: no other brain could take them over.
# The server ends such a transaction after this long. No transaction here waits on its
# client for more than milliseconds, so only a frozen or wedged one ever reaches it.
IDLE_IN_TRANSACTION_TIMEOUT_MS: Final = 5000
CONNECT_TIMEOUT_S: Final = 5.0


class PostgresEventStore(
    SqlSessionStore, SqlThreads, SqlTenancy, SqlResources, SqlWork, SqlWebhooks
):
    backend = "postgres"

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        clock: Callable[[], float] = time.time,
        limits: StoreLimits | None = None,
        registry: CollectorRegistry | None = None,
        pool_size: int = 10,
    ) -> None:
        server_settings = {
            "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_TIMEOUT_MS)
        }
        if schema:
            server_settings["search_path"] = schema
        super().__init__(clock=clock, limits=limits, registry=registry)
        # No pre-ping: it costs three round trips per checkout; a dropped connection shows up
        # as connection_invalidated instead, and the store retries it as transient.
        self._engine = create_async_engine(
            _asyncpg_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            # A server that does not answer (a host down, packets dropped) fails a connection
            # in seconds, not asyncpg's minute: callers answer 503 instead of hanging.
            connect_args={"server_settings": server_settings, "timeout": CONNECT_TIMEOUT_S},
        )

        # Reads run without BEGIN/ROLLBACK around them: one round trip per query.
        self._reads = self._engine.execution_options(isolation_level="AUTOCOMMIT")

    async def _run_write(self, operation: Callable[[Connection], T]) -> T:
        async with self._engine.begin() as conn:
            return await conn.run_sync(operation)

    async def _run_read(self, operation: Callable[[Connection], T]) -> T:
        async with self._reads.connect() as conn:
            return await conn.run_sync(operation)

    async def _close_backend(self) -> None:
        await self._engine.dispose()

    def _is_transient(self, exc: DBAPIError) -> bool:
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith("08")


def _asyncpg_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")
