from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from session_store import PostgresEventStore
from session_store._postgres import IDLE_IN_TRANSACTION_TIMEOUT_MS
from tests.backends import PostgresBackend
from tests.session_store.contract import CREATED, StoreContract
from tests.session_store.managed_contract import ManagedContract
from tests.session_store.webhook_contract import WebhookContract
from tests.session_store.work_contract import WorkContract


class TestPostgresStore(StoreContract, ManagedContract, WorkContract, WebhookContract):
    @pytest.fixture
    def backend(self, postgres_backend: PostgresBackend) -> PostgresBackend:
        return postgres_backend


async def test_a_writer_frozen_inside_its_transaction_does_not_hold_the_session(
    postgres_backend: PostgresBackend,
) -> None:
    """A brain frozen mid-write (SIGSTOP, a paused VM) holds its session's row lock; the
    server ends its transaction, and another brain takes the session over."""
    frozen, other = postgres_backend.make_store(), postgres_backend.make_store()
    assert isinstance(frozen, PostgresEventStore)
    try:
        await frozen.migrate()
        session_id = (await frozen.create_session("acme", CREATED)).session_id
        lease = await frozen.claim(session_id, "brain-frozen", ttl=0.2)
        async with frozen._engine.connect() as connection:
            await connection.begin()
            # Renewing, when it froze: the row is locked and the client sends nothing more.
            await connection.execute(
                text("UPDATE sessions SET lease_until = lease_until WHERE session_id = :sid"),
                {"sid": session_id},
            )
            await asyncio.sleep(0.3)  # its lease lapses meanwhile
            started = time.monotonic()
            taken = await asyncio.wait_for(
                other.claim(session_id, "brain-other", ttl=30),
                timeout=IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000 + 5,
            )
            assert time.monotonic() - started < IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000 + 2
            assert taken.epoch == lease.epoch + 1
            with pytest.raises(DBAPIError):  # when it thaws, its transaction is gone
                await connection.commit()
    finally:
        await frozen.close()
        await other.close()
