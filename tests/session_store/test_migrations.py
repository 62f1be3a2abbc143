from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

import session_store
from schemas import AgentSpec, SessionCreated, Usage, UserMessage
from session_store import SqliteEventStore
from session_store._tables import SCHEMA_REVISION
from tests.backends import SqliteBackend
from tests.session_store.work_contract import ENV, waiting


def alembic_config() -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(Path(session_store.__file__).parent / "migrations")
    )
    return config


async def store_at(path: Path, revision: str) -> SqliteEventStore:
    """A store on the SQLite file `path`, migrated to `revision` only (the caller closes it)."""
    store = SqliteEventStore(path)
    config = alembic_config()

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    await store._write(upgrade)
    return store


@contextlib.asynccontextmanager
async def upgraded(path: Path) -> AsyncIterator[SqliteEventStore]:
    """A store on `path`, migrated to the newest revision the way a starting process does."""
    store = SqliteEventStore(path)
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


def test_the_declared_revision_is_the_newest_migration() -> None:
    """A store at SCHEMA_REVISION skips Alembic at start: it must be the real head."""
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_REVISION


async def test_a_store_made_before_session_totals_upgrades_and_keeps_its_sessions(
    tmp_path: Path,
) -> None:
    """Migration 0005 on a live SQLite file (batch mode rebuilds the table): rows survive,
    with empty totals, and appends then keep them."""
    path = tmp_path / "keel.db"
    old = await store_at(path, "0004")
    await old._write(
        lambda conn: conn.exec_driver_sql(
            "INSERT INTO sessions (session_id, tenant, created_at, updated_at, head_seq,"
            " head_hash, status, status_reason, lease_epoch) VALUES"
            " ('ses_old', 'acme', 1.0, 1.0, 0, x'00', 'idle', '', 0)"
        )
    )
    await old.close()

    async with upgraded(path) as store:
        info = await store.get_session("ses_old")
        assert (info.tenant, info.title, info.metadata, info.turns) == ("acme", "", {}, 0)
        assert info.usage == Usage() and info.cost_usd == 0.0


async def test_keys_the_old_scheme_left_in_progress_are_freed(tmp_path: Path) -> None:
    """Migration 0006: a key taken by a gateway that died before answering (status 0) no
    longer refuses every retry; answered keys keep their answers."""
    path = tmp_path / "keel.db"
    old = await store_at(path, "0005")
    await old._write(
        lambda conn: conn.exec_driver_sql(
            "INSERT INTO idempotency_keys (tenant, key, request_hash, status, body, created_at)"
            " VALUES ('acme', 'stuck', 'h', 0, x'', 1.0), ('acme', 'done', 'h', 201, x'7b7d', 1.0)"
        )
    )
    await old.close()

    async with upgraded(path) as store:
        assert await store.recall("acme", "stuck") is None
        done = await store.recall("acme", "done")
        assert done is not None and (done.status, done.body) == (201, b"{}")


async def test_a_store_with_a_blob_table_upgrades_and_keeps_its_sessions(tmp_path: Path) -> None:
    """Migration 0007 drops `blobs` (hands keep blobs in NATS), rows and all; sessions, their
    logs and API keys survive, and the schema is then exactly the declared one."""
    path = tmp_path / "keel.db"
    old = await store_at(path, "0006")
    info = await old.create_session("acme", SessionCreated(spec=AgentSpec(), title="kept"))
    await old.append_input(info.session_id, [UserMessage(text="hi")])
    key = await old.create_api_key("acme")
    await old._write(
        lambda conn: conn.exec_driver_sql(
            "INSERT INTO blobs (digest, size, media_type, created_at, data)"
            " VALUES ('ab', 2, 'text/plain', 1.0, x'6869')"
        )
    )
    await old.close()

    async with upgraded(path) as store:
        kept = await store.get_session(info.session_id)
        assert (kept.title, kept.head_seq) == ("kept", 2)
        assert [r.event for r in await store.read(info.session_id)][1] == UserMessage(text="hi")
        assert (await store.verify(info.session_id)).ok
        assert await store.tenant_for_key(key.key) == "acme"
        assert await SqliteBackend(tmp_path).schema_diff() == []


async def test_a_session_waiting_on_its_worker_before_work_items_existed_gets_one(
    tmp_path: Path,
) -> None:
    """Migration 0009 adds the work queue: a self-hosted session that was already waiting
    for its worker's results is handed out by the first poll after the upgrade."""
    path = tmp_path / "keel.db"
    old = await store_at(path, "0008")
    session_id = await waiting(old)
    await old.close()

    async with upgraded(path) as store:
        item = await store.poll_work("acme", ENV)
        assert item is not None and item.session_id == session_id
        assert await SqliteBackend(tmp_path).schema_diff() == []
