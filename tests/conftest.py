from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import PostgresBackend, SqliteBackend, postgres_schema, require_postgres


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> SqliteBackend:
    return SqliteBackend(tmp_path)


@pytest.fixture
def postgres_backend() -> Iterator[PostgresBackend]:
    require_postgres()
    for schema in postgres_schema():
        yield PostgresBackend(schema)
