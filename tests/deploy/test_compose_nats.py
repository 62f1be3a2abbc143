"""The compose file's NATS cluster, for real: its three nodes start from the keel image, find
each other over their routes, pass their health checks, and keep a JetStream stream on all
three (R3), which needs the cluster's meta leader and a leader for the stream."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from schemas import new_id
from tests.deploy.conftest import docker
from tests.deploy.test_manifests import COMPOSE, compose_command

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("keel_images")]

NODES = ("nats-1", "nats-2", "nats-3")
# Run on the compose network by a keel container: every node's URL, an R3 stream, and the
# stream's view of its replicas.
R3_CHECK = """
import asyncio, sys, nats
from nats.js.api import StreamConfig

async def main():
    nc = await nats.connect([f"nats://nats-{n}:4222" for n in (1, 2, 3)])
    js = nc.jetstream()
    config = StreamConfig(name="R3CHECK", subjects=["r3check"], num_replicas=3)
    for _ in range(60):  # a busy machine: the new stream's leader may take a moment
        try:
            await js.add_stream(config)
            break
        except Exception as exc:
            print(exc, file=sys.stderr)
            await asyncio.sleep(0.5)
    await js.publish("r3check", b"x")
    info = await js.stream_info("R3CHECK")
    print(info.cluster.leader, len(info.cluster.replicas or []), info.state.messages)
    await nc.close()

asyncio.run(main())
"""


@pytest.fixture
def project() -> Iterator[list[str]]:
    command = [*compose_command(), "-p", new_id("keeltest").lower(), "-f", str(COMPOSE)]
    try:
        yield command
    finally:
        subprocess.run([*command, "down", "-v", "-t", "5"], check=False, capture_output=True)


def test_the_compose_nats_cluster_forms_and_keeps_a_stream_on_three_nodes(
    project: list[str],
) -> None:
    up = subprocess.run(
        [*project, "up", "-d", *NODES], check=False, capture_output=True, text=True, timeout=120
    )
    assert up.returncode == 0, up.stderr
    ids = subprocess.run(
        [*project, "ps", "-q", *NODES], check=True, capture_output=True, text=True
    ).stdout.split()
    assert len(ids) == 3
    deadline = time.monotonic() + 60
    while True:
        health = [
            docker("inspect", "-f", "{{.State.Health.Status}}", cid).stdout.strip() for cid in ids
        ]
        if health == ["healthy"] * 3:
            break
        if time.monotonic() > deadline:
            logs = "\n".join(docker("logs", "--tail", "20", cid).stderr for cid in ids)
            pytest.fail(f"the NATS nodes are {health} after 60 s:\n{logs}")
        time.sleep(1)
    check = subprocess.run(
        [
            *project,
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "--entrypoint",
            "python",
            "nats-1",
            "-c",
            R3_CHECK,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    leader, replicas, messages = check.stdout.split()
    assert leader in NODES
    assert (int(replicas), int(messages)) == (2, 1)  # the leader and two followers
