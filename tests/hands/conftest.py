from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hands import HandsHost, HandsSettings, LocalBackend
from hands._backend import SandboxBackend
from schemas import new_id
from tests.hands.client import HandsTestClient
from tests.nats_server import NatsServer

SANDBOX_IMAGE = os.environ.get("KEEL_SANDBOX_IMAGE", "keel-sandbox:latest")


def _missing(what: str, variable: str) -> None:
    """Skip without `what`, unless CI demands it (then fail: never a silent skip there)."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{what} is required here ({variable}=1) but is not available")
    pytest.skip(f"{what} is not available")


def local_backend(isolation: str = "bwrap") -> SandboxBackend:
    if isolation == "bwrap" and shutil.which("bwrap") is None:
        _missing("bubblewrap", "KEEL_REQUIRE_BWRAP")
    if isolation == "unshare" and os.geteuid() != 0:
        _missing("root (for the unshare sandbox)", "KEEL_REQUIRE_UNSHARE")
    return LocalBackend(isolation)  # type: ignore[arg-type]


def docker_backend() -> SandboxBackend:
    docker_ok = shutil.which("docker") and (
        subprocess.run(
            ["docker", "image", "inspect", SANDBOX_IMAGE], check=False, capture_output=True
        ).returncode
        == 0
    )
    if not docker_ok:
        _missing(f"a Docker engine with the {SANDBOX_IMAGE} image", "KEEL_REQUIRE_DOCKER")
    from hands._docker import DockerBackend

    return DockerBackend(SANDBOX_IMAGE)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
        heartbeat_s=0.2,
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
