"""The store backends under test, each a real database: a SQLite file, the local PostgreSQL.

A backend can make stores, hand out a URL (for child processes) and run raw SQL (to tamper
with a log the way an attacker with database access would).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from session_store import EventStore, PostgresEventStore, SqliteEventStore
from session_store._tables import metadata

POSTGRES_URL = os.environ.get(
    "KEEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class Backend(Protocol):
    name: str
    url: str

    def make_store(
        self, clock: Callable[[], float] = time.time, registry: CollectorRegistry | None = None
    ) -> EventStore: ...
    async def execute(self, sql: str) -> None: ...
    async def fetch_value(self, sql: str) -> object: ...
    async def schema_diff(self) -> list[object]: ...


def _diff(connection: Connection) -> list[object]:
    """What Alembic's autogenerate sees between the migrated database and `_tables.py`."""
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, metadata))


class SqliteBackend:
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "keel.db"
        self.url = f"sqlite:///{self.path}"

    def make_store(
        self, clock: Callable[[], float] = time.time, registry: CollectorRegistry | None = None
    ) -> EventStore:
        return SqliteEventStore(self.path, clock=clock, registry=registry)

    async def execute(self, sql: str) -> None:
        import sqlite3

        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            connection.execute(sql)
        finally:
            connection.close()

    async def fetch_value(self, sql: str) -> object:
        import sqlite3

        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            return connection.execute(sql).fetchone()[0]
        finally:
            connection.close()

    async def schema_diff(self) -> list[object]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                return _diff(connection)
        finally:
            engine.dispose()


class PostgresBackend:
    name = "postgres"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.url = f"{POSTGRES_URL}?schema={schema}"

    def make_store(
        self, clock: Callable[[], float] = time.time, registry: CollectorRegistry | None = None
    ) -> EventStore:
        return PostgresEventStore(POSTGRES_URL, schema=self.schema, clock=clock, registry=registry)

    async def execute(self, sql: str) -> None:
        connection = await asyncpg.connect(
            POSTGRES_URL, server_settings={"search_path": self.schema}
        )
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    async def fetch_value(self, sql: str) -> object:
        connection = await asyncpg.connect(
            POSTGRES_URL, server_settings={"search_path": self.schema}
        )
        try:
            return await connection.fetchval(sql)
        finally:
            await connection.close()

    async def schema_diff(self) -> list[object]:
        engine = create_async_engine(
            POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://", 1),
            connect_args={"server_settings": {"search_path": self.schema}},
        )
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(_diff)
        finally:
            await engine.dispose()


def require_postgres() -> None:
    """Skip when PostgreSQL is absent, unless KEEL_REQUIRE_POSTGRES=1 (CI): then fail."""
    import asyncio

    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = (
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc!r}); to run these: start "
            "PostgreSQL on 127.0.0.1:5432 with trust auth, or set KEEL_TEST_POSTGRES_URL"
        )
        if os.environ.get("KEEL_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def postgres_schema() -> Iterator[str]:
    """A fresh, empty schema for one test; dropped afterwards."""
    import asyncio

    schema = f"keel_test_{secrets.token_hex(6)}"

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(POSTGRES_URL)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f"CREATE SCHEMA {schema}"))
    try:
        yield schema
    finally:
        asyncio.run(run(f"DROP SCHEMA {schema} CASCADE"))


__all__ = [
    "POSTGRES_URL",
    "Backend",
    "PostgresBackend",
    "SqliteBackend",
    "postgres_schema",
    "require_postgres",
]
