from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hands import HandsHost, HandsSettings
from hands._backend import SandboxBackend
from schemas import new_id
from tests.hands.client import HandsTestClient
from tests.nats_server import NatsServer
from tests.sandboxes import SANDBOX_IMAGE, docker_backend, local_backend


@pytest.fixture(params=["local", "unshare", "docker"])
def backend_name(request: pytest.FixtureRequest) -> str:
    """Every hands test runs on each backend: bubblewrap, unshare + chroot, Docker."""
    return str(request.param)


@pytest.fixture
def backend(backend_name: str) -> SandboxBackend:
    if backend_name == "docker":
        return docker_backend()
    return local_backend("unshare" if backend_name == "unshare" else "bwrap")


@pytest.fixture
def settings(nats_server: NatsServer, tmp_path: Path, backend_name: str) -> HandsSettings:
    return HandsSettings(
        nats_url=nats_server.url,
        data_dir=tmp_path / "hands",
        backend="docker" if backend_name == "docker" else "local",
        local_isolation="unshare" if backend_name == "unshare" else None,
        docker_image=SANDBOX_IMAGE,
        # Unique: a host reaps only its own orphans, so parallel runs never touch each other.
        host_id=new_id("hands-test"),
    )


@pytest.fixture
async def host(settings: HandsSettings, backend: SandboxBackend) -> AsyncIterator[HandsHost]:
    host = HandsHost(settings, backend)
    await host.start()
    try:
        yield host
    finally:
        await host.close(destroy_sandboxes=True)


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[HandsTestClient]:
    client = await HandsTestClient.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()
