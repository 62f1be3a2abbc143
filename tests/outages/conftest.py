"""What the outage drills share: a store URL on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keel.db'}"
    else:
        schema = request.getfixturevalue("postgres_backend").schema
        yield f"{POSTGRES_URL}?schema={schema}"
