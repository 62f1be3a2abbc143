from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import PostgresBackend, SqliteBackend, postgres_schema, require_postgres
from tests.nats_server import NatsServer


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> SqliteBackend:
    return SqliteBackend(tmp_path)


@pytest.fixture
def postgres_backend() -> Iterator[PostgresBackend]:
    require_postgres()
    for schema in postgres_schema():
        yield PostgresBackend(schema)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream, on a free loopback port, for one test."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()
