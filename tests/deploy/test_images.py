"""The process images deploy/images/build.sh makes: each role starts from its image against a
real NATS and PostgreSQL, answers its probe, and stops cleanly on SIGTERM (`docker stop`);
and a brain, a hands host (Docker sandboxes, through the engine's socket) and a gateway, each
from its image, run `keel drill`'s sessions to completion."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from schemas import new_id
from session_store import open_store
from tests.backends import PostgresBackend
from tests.deploy.conftest import docker
from tests.nats_server import NatsServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("keel_images")]


@pytest.fixture
def run() -> Iterator[object]:
    """`docker run -d` on the host's network (the tests' NATS and PostgreSQL are on its
    loopback); every container started is removed at the end."""
    started: list[str] = []

    def run(image: str, env: dict[str, str], *flags: str) -> str:
        name = new_id("keel-test")
        variables = [flag for key, value in env.items() for flag in ("-e", f"{key}={value}")]
        result = docker("run", "-d", "--name", name, "--network", "host", *variables, *flags, image)
        assert result.returncode == 0, result.stderr
        started.append(name)
        return name

    yield run
    for name in started:
        docker("rm", "-f", name)


def wait_for(check: object, what: str, logs_of: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {timeout_s}s:\n{docker('logs', logs_of).stderr[-3000:]}")
        time.sleep(0.2)


def stop(name: str) -> int:
    """SIGTERM, as `docker stop`, a rolling update or a scale-down send it; the exit code."""
    started = time.monotonic()
    assert docker("stop", "--time", "20", name).returncode == 0
    assert time.monotonic() - started < 15, f"{name} did not stop on SIGTERM"
    return int(docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout)


def test_the_images_carry_every_role_and_nats_server() -> None:
    result = docker(
        "run",
        "--rm",
        "keel-hands:latest",
        "sh",
        "-c",
        "id -u && nats-server --version && bwrap --version"
        " && python -c 'import brain.service, hands._docker, gateway, deploy.cli'"
        ' && echo "$KEEL_SANDBOX_BACKEND $KEEL_HANDS_DIR"',
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "10001"  # the sandbox uid, never root
    assert lines[-1] == "docker /var/lib/keel/hands"


def test_a_gateway_and_a_brain_start_from_their_images_and_stop_on_sigterm(
    run: object, nats_server: NatsServer, postgres_backend: PostgresBackend
) -> None:
    env = {"KEEL_STORE_URL": postgres_backend.url, "KEEL_NATS_URL": nats_server.url}
    metrics_port, http_port = free_port(), free_port()
    brain = run(  # type: ignore[operator]
        "keel-brain:latest",
        env | {"KEEL_BRAIN_ID": "brain-image", "KEEL_METRICS_ADDR": f"127.0.0.1:{metrics_port}"},
    )
    wait_for(lambda: "brain brain-image ready" in docker("logs", brain).stdout, "no brain", brain)
    gateway = run("keel-gateway:latest", env | {"KEEL_HTTP_PORT": str(http_port)})  # type: ignore[operator]

    def ready() -> bool:
        try:
            return httpx2.get(f"http://127.0.0.1:{http_port}/readyz", timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    wait_for(ready, "the gateway is not ready", gateway)
    metrics = httpx2.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
    assert "keel_brain_sessions_held" in metrics.text
    assert stop(brain) == 0
    # uvicorn ends by raising the signal again once it has shut down: 128 + SIGTERM.
    assert stop(gateway) in (0, 143)
    assert "Finished server process" in docker("logs", gateway).stderr


def test_a_brain_a_hands_host_and_a_gateway_from_their_images_run_sessions_with_tools(
    run: object, nats_server: NatsServer, postgres_backend: PostgresBackend, tmp_path: Path
) -> None:
    """What the compose file and the DaemonSet give a hands host: the engine's socket, the
    group that owns it, and its directory at the same path inside and out."""
    if not os.path.exists("/var/run/docker.sock"):
        if os.environ.get("KEEL_REQUIRE_DOCKER") == "1":
            pytest.fail(
                "a Docker engine is required here (KEEL_REQUIRE_DOCKER=1) but has no socket"
            )
        pytest.skip("no Docker engine socket at /var/run/docker.sock")
    hands_dir = tmp_path / "hands"
    hands_dir.mkdir()
    os.chown(hands_dir, 10001, 10001)  # the image's user (the tests run as root in CI)
    env = {"KEEL_STORE_URL": postgres_backend.url, "KEEL_NATS_URL": nats_server.url}
    http_port = free_port()
    brain = run("keel-brain:latest", env | {"KEEL_BRAIN_ID": "brain-image"})  # type: ignore[operator]
    hands = run(  # type: ignore[operator]
        "keel-hands:latest",
        {
            "KEEL_NATS_URL": nats_server.url,
            "KEEL_HANDS_ID": "hands-image",
            "KEEL_HANDS_DIR": str(hands_dir),
        },
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        f"{hands_dir}:{hands_dir}",
        "--group-add",
        str(os.stat("/var/run/docker.sock").st_gid),
    )
    run("keel-gateway:latest", env | {"KEEL_HTTP_PORT": str(http_port)})  # type: ignore[operator]
    for name, line in ((brain, "brain brain-image ready"), (hands, "hands host hands-image ready")):
        wait_for(lambda: line in docker("logs", name).stdout, f"{name} not ready", name)  # noqa: B023
    key = asyncio.run(_api_key(postgres_backend.url))
    (tmp_path / "key").write_text(key)
    (tmp_path / "drill.toml").write_text(
        f'http_url = "http://127.0.0.1:{http_port}"\n'
        f'store_url = "{postgres_backend.url}"\n'
        f'api_key_file = "{tmp_path / "key"}"\n'
        f'hands_dir = "{hands_dir}"\n'
    )
    # No process section: the only faults drawn are sandboxes killed under their calls.
    drill = subprocess.run(
        [
            *(sys.executable, "-m", "deploy.cli", "drill"),
            *("--deployment", str(tmp_path / "drill.toml"), "--seed", "7"),
            *("--faults", "2", "--sessions", "3", "--settle-s", "120"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    logs = "\n".join(docker("logs", "--tail", "30", name).stderr for name in (brain, hands))
    assert drill.returncode == 0, f"{drill.stdout}\n{drill.stderr}\n{logs}"
    assert "completed=3" in drill.stdout, drill.stdout
    assert stop(hands) == 0


async def _api_key(store_url: str) -> str:
    store = open_store(store_url)
    try:
        return (await store.create_api_key("acme", "image test")).key
    finally:
        await store.close()
