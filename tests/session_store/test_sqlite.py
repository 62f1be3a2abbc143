from __future__ import annotations

import sqlite3

import pytest

from session_store import EventStore
from tests.backends import SqliteBackend
from tests.session_store.contract import CREATED, StoreContract


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def backend(self, sqlite_backend: SqliteBackend) -> SqliteBackend:
        return sqlite_backend

    async def test_file_is_durable_wal(self, store: EventStore, backend: SqliteBackend) -> None:
        await store.create_session("acme", CREATED)
        connection = sqlite3.connect(backend.path)
        try:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            connection.close()
