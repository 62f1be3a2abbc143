from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from brain.providers import Providers
from tests.brain.providers.conversation import KEY, KEY_ENV
from tests.brain.providers.model_server import ModelServer


@pytest.fixture
def server() -> Iterator[ModelServer]:
    model_server = ModelServer().start()
    try:
        yield model_server
    finally:
        model_server.close()


@pytest.fixture
async def providers() -> AsyncIterator[Providers]:
    """Providers whose key comes from a private environment (the process's is not read)."""
    made = Providers(environ={KEY_ENV: KEY})
    try:
        yield made
    finally:
        await made.aclose()
