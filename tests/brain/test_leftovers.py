"""A drill that used to leave sandboxes behind: brains and the hands host SIGKILLed at moments
drawn from a seed while coding sessions run, each restarted. Once every session has
finished and the hands' idle period has passed, nothing of keel's is left: no sandbox
directory, no cgroup, no container, no executor process. Brains, hands and sandboxes are
real processes; on both stores and both sandbox backends."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from hands._cgroup import Cgroup
from schemas import new_id
from session_store import EventStore
from tests.brain.conftest import SpawnBrain, start_session, wait_for_status
from tests.brain.invariants import check_invariants
from tests.brain.scenario import coding_script, coding_spec
from tests.brain.test_recovery import assert_ran_once
from tests.hands.processes import HandsProcess, remove_sandboxes
from tests.nats_server import NatsServer
from tests.sandboxes import SANDBOX_IMAGE, docker_backend, local_backend

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow

IDLE_S = 3.0
CHECK_S = 0.5
SESSIONS = 4


@pytest.fixture(params=["local", "docker"])
def sandbox_backend(request: pytest.FixtureRequest) -> str:
    # Fails (in CI) or skips without the backend's parts, like every hands test.
    docker_backend() if request.param == "docker" else local_backend()
    return str(request.param)


def leftovers(host_id: str, data_dir: Path, backend: str) -> list[str]:
    """Everything of this host's sandboxes still on the machine."""
    found = [f"directory {p.name}" for p in (data_dir / "sandboxes").glob("*")]
    if backend == "local":
        parent = next(iter(Cgroup("_").dirs.values())).parent
        if parent.is_dir():
            found += [f"cgroup {p.name}" for p in parent.glob(f"{host_id}.*")]
    else:
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=keel.host={host_id}"],
            check=True,
            capture_output=True,
            text=True,
        )
        found += [f"container {c}" for c in listed.stdout.split()]
    return found


@pytest.mark.timeout(240)
async def test_nothing_of_a_drill_is_left_once_its_sessions_end(
    store: EventStore,
    js: JetStreamContext,
    nats_server: NatsServer,
    tmp_path: Path,
    spawn_brain: SpawnBrain,
    sandbox_backend: str,
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    host_id = new_id("hands-drill")
    data_dir = tmp_path / "hands"
    hands = HandsProcess(
        nats_server.url,
        data_dir,
        tmp_path / "hands.log",
        host_id=host_id,
        backend=sandbox_backend,
        env={
            "KEEL_SANDBOX_IDLE_S": str(IDLE_S),
            "KEEL_SANDBOX_CHECK_S": str(CHECK_S),
            "KEEL_SANDBOX_IMAGE": SANDBOX_IMAGE,
        },
    ).start()
    try:
        brain = spawn_brain()
        spec = coding_spec(coding_script(model_latency_ms=250.0))
        sessions = [await start_session(store, js, spec) for _ in range(SESSIONS)]
        # Faults at moments drawn from the seed: a brain, the hands host, a brain again.
        for fault in ("brain", "hands", "brain"):
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            if fault == "brain":
                brain.kill()
                brain = spawn_brain()
            else:
                hands.kill()
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                hands.start()  # the same id: it adopts the sandboxes the dead one left
        for session_id in sessions:
            info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=120)
            assert info.status == "completed", (seed, info)
            assert_ran_once(await check_invariants(store, session_id))

        deadline = time.monotonic() + IDLE_S + 10 * CHECK_S + 10
        while left := leftovers(host_id, data_dir, sandbox_backend):
            assert time.monotonic() < deadline, (seed, left, hands.output()[-5000:])
            await asyncio.sleep(0.2)
    finally:
        hands.stop()
        backend = docker_backend() if sandbox_backend == "docker" else local_backend()
        await remove_sandboxes(data_dir, backend)  # only when the test failed
