from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import nats
import pytest
import uvicorn

from brain.providers import Providers
from brain.service import Brain, ensure_work_stream
from gateway import StreamSettings, WebhookSettings, WorkSettings, create_app
from session_store import EventStore, SqliteEventStore
from tests.brain.conftest import brain_settings
from tests.nats_server import NatsServer, free_port

WORK_LEASE_S = 3


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = SqliteEventStore(tmp_path / "keel.db")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def webhook_settings() -> WebhookSettings:
    """The gateway's webhook settings: off (no URL allowed), unless a test module says."""
    return WebhookSettings()


@pytest.fixture
async def gateway_url(
    store: EventStore, nats_server: NatsServer, webhook_settings: WebhookSettings
) -> AsyncIterator[str]:
    """The gateway served by uvicorn on a free loopback port: real HTTP over a socket."""
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_work_stream(js)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(
                store,
                nc,
                stream=StreamSettings(heartbeat_s=0.5, poll_s=1.0),
                # A self-hosted worker that dies loses its item in seconds, not a minute.
                work=WorkSettings(lease_s=WORK_LEASE_S, recheck_s=0.05),
                webhooks=webhook_settings,
            ),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), serving
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        await nc.drain()


@pytest.fixture
async def brain(store: EventStore, nats_server: NatsServer) -> AsyncIterator[Brain]:
    running = Brain(brain_settings(nats_server), store=store, providers=Providers())
    await running.start()
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def client(gateway_url: str, store: EventStore) -> AsyncIterator[httpx2.AsyncClient]:
    key = await store.create_api_key("acme", "tests")
    headers = {"authorization": f"Bearer {key.key}"}
    async with httpx2.AsyncClient(base_url=gateway_url, headers=headers, timeout=10) as client:
        yield client
