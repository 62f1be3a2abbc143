from __future__ import annotations

import sqlite3

import pytest

from schemas import ModelResponse, SessionStatus, TextBlock, Usage
from session_store import EventStore
from session_store._projection import INPUT_GRACE_S
from tests.backends import SqliteBackend
from tests.session_store.contract import CREATED, StoreContract, keyed, message
from tests.session_store.managed_contract import ManagedContract
from tests.session_store.webhook_contract import WebhookContract
from tests.session_store.work_contract import WorkContract


class TestSqliteStore(StoreContract, ManagedContract, WorkContract, WebhookContract):
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

    async def test_the_fast_path_writes_what_the_general_path_writes(
        self, store: EventStore, backend: SqliteBackend
    ) -> None:
        """Unkeyed appends take the raw-driver fast path; keyed ones the SQLAlchemy path. Both
        run the same statements, so they leave the same rows."""
        turn = ModelResponse(
            content=[TextBlock(text="hi")],
            stop_reason="end_turn",
            usage=Usage(input_tokens=7, output_tokens=3),
            cost_usd=0.5,
        )
        appends = [[message(1)], [turn, SessionStatus(status="waiting", reason="tools")], [turn]]
        fast = (await store.create_session("acme", CREATED)).session_id
        general = (await store.create_session("acme", CREATED)).session_id
        for i, events in enumerate(appends):
            await store.append_input(fast, events)
            await store.append_input(general, events, keyed=keyed(f"k{i}", lambda a: (202, b"")))

        connection = sqlite3.connect(backend.path)
        try:

            def row(session_id: str) -> tuple[object, ...]:
                return connection.execute(
                    "SELECT head_seq, status, status_reason, input_tokens, output_tokens, cost_usd,"
                    " turns, wake_at - (SELECT at FROM events e WHERE e.session_id = s.session_id"
                    " AND seq = 2) FROM sessions s WHERE session_id = ?",
                    (session_id,),
                ).fetchone()

            def log(session_id: str) -> list[tuple[object, ...]]:
                return connection.execute(
                    "SELECT seq, type, data FROM events WHERE session_id = ? ORDER BY seq",
                    (session_id,),
                ).fetchall()

            assert row(fast) == row(general)
            assert row(fast) == (5, "waiting", "tools", 14, 6, 1.0, 2, INPUT_GRACE_S)
            assert log(fast) == log(general)
        finally:
            connection.close()
        assert (await store.verify(fast)).ok and (await store.verify(general)).ok
