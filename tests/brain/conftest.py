from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext

from brain.providers import Providers
from brain.service import Brain, ensure_work_stream, request_attention
from brain.settings import BrainSettings
from hands import HandsHost, HandsSettings
from schemas import AgentSpec, SessionCreated, UserMessage, new_id
from session_store import EventStore, SessionInfo
from tests.backends import Backend, SqliteBackend
from tests.brain.processes import BrainProcess
from tests.nats_server import NatsServer
from tests.sandboxes import local_backend


@pytest.fixture
def sqlite_store_backend(tmp_path: Path) -> Backend:
    return SqliteBackend(tmp_path)


@pytest.fixture
async def hands_host(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[HandsHost]:
    settings = HandsSettings(
        nats_url=nats_server.url,
        data_dir=tmp_path / "hands",
        backend="local",
        host_id=new_id("hands-test"),
    )
    host = HandsHost(settings, local_backend())
    await host.start()
    try:
        yield host
    finally:
        await host.close(destroy_sandboxes=True)


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_work_stream(js)
    try:
        yield js
    finally:
        await nc.drain()


def brain_settings(nats_server: NatsServer, **fields: object) -> BrainSettings:
    defaults: dict[str, object] = {
        "nats_url": nats_server.url,
        "brain_id": new_id("brain"),
        "lease_s": 2.0,
        "snapshot_every": 10,
    }
    return BrainSettings(**(defaults | fields))  # type: ignore[arg-type]


@pytest.fixture
async def make_brain(
    nats_server: NatsServer, store: EventStore
) -> AsyncIterator[Callable[..., asyncio.Future[Brain]]]:
    brains: list[Brain] = []

    async def make(**fields: object) -> Brain:
        brain = Brain(brain_settings(nats_server, **fields), store=store, providers=Providers())
        await brain.start()
        brains.append(brain)
        return brain

    try:
        yield make  # type: ignore[misc]
    finally:
        for brain in brains:
            await brain.close()


async def start_session(
    store: EventStore, js: JetStreamContext, spec: AgentSpec, text: str = "Fix add()."
) -> str:
    """What the gateway does: create, append the user's message, ask for attention."""
    info = await store.create_session("acme", SessionCreated(spec=spec, title="test"))
    await store.append_input(info.session_id, [UserMessage(text=text)])
    await request_attention(js, info.session_id, "user.message")
    return info.session_id


async def wait_for_status(
    store: EventStore, session_id: str, statuses: set[str], timeout_s: float = 60.0
) -> SessionInfo:
    deadline = time.monotonic() + timeout_s
    while True:
        info = await store.get_session(session_id)
        if info.status in statuses:
            return info
        if time.monotonic() > deadline:
            log = await store.read(session_id)
            raise AssertionError(
                f"session {session_id} is {info.status}, not {statuses}, after {timeout_s}s: "
                + "; ".join(f"{r.seq} {r.type}" for r in log[-15:])
            )
        await asyncio.sleep(0.05)


async def wait_released(store: EventStore, session_id: str, timeout_s: float = 10.0) -> None:
    """The brain lets go just after its last append: a reader may see the final status a
    moment before the lease is released."""
    deadline = time.monotonic() + timeout_s
    while (await store.get_session(session_id)).lease_owner is not None:
        assert time.monotonic() < deadline, f"session {session_id} is still held"
        await asyncio.sleep(0.02)


SpawnBrain = Callable[..., BrainProcess]


@pytest.fixture
def spawn_brain(
    store_backend: Backend, nats_server: NatsServer, tmp_path: Path
) -> Iterator[SpawnBrain]:
    """Start brain processes on the test's store and NATS (`BrainProcess`'s fields, e.g.
    `crash_at`), each stopped at the end of the test."""
    started: list[BrainProcess] = []

    def spawn_brain(**fields: object) -> BrainProcess:
        brain_id = new_id("brain")
        brain = BrainProcess(
            store_url=store_backend.url,
            nats_url=nats_server.url,
            brain_id=brain_id,
            log_path=tmp_path / f"{brain_id}.log",
            **fields,  # type: ignore[arg-type]
        )
        started.append(brain)
        return brain.start()

    yield spawn_brain
    for brain in started:
        brain.stop()
