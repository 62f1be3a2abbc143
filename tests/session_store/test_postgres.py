from __future__ import annotations

import pytest

from tests.backends import PostgresBackend
from tests.session_store.contract import StoreContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def backend(self, postgres_backend: PostgresBackend) -> PostgresBackend:
        return postgres_backend
