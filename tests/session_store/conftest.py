from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from session_store import EventStore
from tests.backends import Backend


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[EventStore]:
    """A migrated store on the test class's `backend`, closed afterwards."""
    store = backend.make_store()
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()
