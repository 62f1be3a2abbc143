"""Recovery drills: brains are real processes, SIGKILLed at each point of a step, frozen past
their lease, restarted in place. Every time another brain finishes the session, every
invariant holds, and the workspace's run counter shows no call ran twice."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from nats.js import JetStreamContext

from drill import sqlite_write_locked
from hands import HandsHost
from schemas import (
    ModelResponse,
    Recorded,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    new_id,
)
from session_store import EventStore
from tests.backends import Backend, SqliteBackend
from tests.brain.conftest import start_session, wait_for_status
from tests.brain.invariants import check_invariants
from tests.brain.processes import BrainProcess
from tests.brain.resets import assert_the_reset_session_went_as_scripted
from tests.brain.scenario import (
    COMPACTION_POINTS,
    coding_script,
    coding_spec,
    compacting_spec,
    reset_script,
    reset_spec,
)
from tests.nats_server import NatsServer
from tests.sandboxes import local_backend

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow


@pytest.fixture
def spawn(
    store_backend: Backend, nats_server: NatsServer, tmp_path: Path
) -> Iterator[BrainProcess]:
    started: list[BrainProcess] = []

    def spawn(brain_id: str | None = None, **fields: object) -> BrainProcess:
        brain_id = brain_id or new_id("brain")
        brain = BrainProcess(
            store_url=store_backend.url,
            nats_url=nats_server.url,
            brain_id=brain_id,
            log_path=tmp_path / f"{brain_id}.{len(started)}.log",
            **fields,  # type: ignore[arg-type]
        )
        started.append(brain)
        return brain.start()

    yield spawn  # type: ignore[misc]
    for brain in started:
        brain.stop()


def assert_ran_once(log: list[Recorded]) -> None:
    """The counter the script's last call printed: two test runs, each exactly once."""
    results = [r.event for r in log if isinstance(r.event, ToolResult)]
    assert results[-1].output.splitlines()[0] == "2", results[-1]
    turns = [r.event for r in log if isinstance(r.event, ModelResponse)]
    assert len(turns) == 6, "a model response was recorded twice or lost"


async def wait_for_event(
    store: EventStore, session_id: str, kind: type, count: int = 1, timeout_s: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(isinstance(r.event, kind) for r in await store.read(session_id)) < count:
        assert time.monotonic() < deadline, f"no {count} x {kind.__name__} in {timeout_s}s"
        await asyncio.sleep(0.02)


def freeze_between_writes(brain: BrainProcess, backend: Backend) -> None:
    """SIGSTOP `brain` at a moment it is not inside a write to a SQLite store.

    A process frozen inside a SQLite write transaction keeps the file's one write lock, and
    every other process on the file waits until it thaws: SQLite cannot take a lock back from
    a live process. (PostgreSQL ends a frozen client's transaction itself, after
    idle_in_transaction_session_timeout; `test_postgres.py` drills that.) This drill is about
    fencing a brain that lost its lease, so on SQLite it freezes the brain between writes.
    """
    for _ in range(100):
        brain.signal(signal.SIGSTOP)
        if not isinstance(backend, SqliteBackend) or not sqlite_write_locked(backend.path):
            return
        brain.signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError("the brain was inside a write at every one of 100 tries")


# Where the first brain dies: the n-th time it reaches each point of a step. The first tool
# turn is written in two steps (its sandbox is still starting: requested, then dispatched);
# later ones in one (requested and dispatched together). The second dispatch is the first
# test run; a snapshot every 5 events lands mid-session.
CRASH_POINTS = [
    "before_model_call:3",
    "after_model_response:2",
    "after_tool_requested:1",
    "after_tool_requested:2",
    "after_dispatched:2",
    "after_send:2",
    "after_tool_result:2",
    "during_snapshot:2",
    # A session that compacts by a model's summary (`compacting_spec`): killed once the
    # summary is back but not recorded, and once `context.compacted` is.
    "after_compaction_summary:2",
    "after_context_compacted:1",
]


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_a_brain_killed_at_each_point_is_replaced_and_nothing_runs_twice(
    crash_at: str,
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    spawn: object,
) -> None:
    first = spawn(crash_at=crash_at, snapshot_every=5)  # type: ignore[operator]
    compacts = crash_at.partition(":")[0] in COMPACTION_POINTS
    spec = (compacting_spec if compacts else coding_spec)(coding_script())
    session_id = await start_session(store, js, spec)
    assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
    spawn(snapshot_every=5)  # type: ignore[operator]
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    assert_ran_once(await check_invariants(store, session_id))


async def test_a_brain_killed_during_a_slow_model_call_is_replaced(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, spawn: object
) -> None:
    first = spawn()  # type: ignore[operator]
    session_id = await start_session(store, js, coding_spec(coding_script(slow_turn=2)))
    await wait_for_event(store, session_id, ModelResponse, count=2)
    await wait_for_event(store, session_id, ToolResult, count=3)
    await asyncio.sleep(0.5)  # the third model call takes 1.5 s: kill it midway
    first.kill()
    spawn()  # type: ignore[operator]
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    assert_ran_once(await check_invariants(store, session_id))


async def test_a_frozen_brain_past_its_lease_is_fenced_and_stops(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    spawn: object,
    store_backend: Backend,
) -> None:
    zombie = spawn()  # type: ignore[operator]
    session_id = await start_session(store, js, coding_spec(coding_script(slow_turn=1)))
    await wait_for_event(store, session_id, ToolResult, count=2)
    freeze_between_writes(zombie, store_backend)  # mid model call, holding the lease
    frozen_at = await store.head(session_id)
    spawn()  # type: ignore[operator]
    await wait_for_event(store, session_id, ModelResponse, count=3)
    taken = await store.get_session(session_id)
    assert taken.lease_owner != zombie.brain_id
    zombie.signal(signal.SIGCONT)
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    log = await check_invariants(store, session_id)
    assert_ran_once(log)
    deadline = time.monotonic() + 10
    while "fenced" not in zombie.output():
        assert time.monotonic() < deadline, zombie.output()
        await asyncio.sleep(0.05)
    assert zombie.process is not None and zombie.process.poll() is None  # alive, just let go
    assert frozen_at < len(log)


async def test_a_dead_brain_s_sessions_are_taken_over_long_before_its_lease_runs_out(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, spawn: object
) -> None:
    """With 30 s leases, only knowing the killed brain is dead (its peers hear "no
    responders" from NATS) lets another take its session in time."""
    first = spawn(lease_s=30.0)  # type: ignore[operator]
    session_id = await start_session(store, js, coding_spec(coding_script(slow_turn=2)))
    await wait_for_event(store, session_id, ModelResponse, count=1)
    assert (await store.get_session(session_id)).lease_owner == first.brain_id
    standby = spawn(lease_s=30.0)  # type: ignore[operator]
    await asyncio.sleep(1.5)  # the standby hears the first say it is there
    await wait_for_event(store, session_id, ModelResponse, count=2)
    epoch = (await store.get_session(session_id)).lease_epoch
    killed = time.monotonic()
    first.kill()
    while (await store.get_session(session_id)).lease_epoch == epoch:
        assert time.monotonic() - killed < 10, "no takeover before the lease's end"
        await asyncio.sleep(0.02)
    print(f"the killed brain's session was taken after {time.monotonic() - killed:.2f} s")
    info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=20)
    assert info.status == "completed", info
    assert info.lease_owner in (None, standby.brain_id)
    assert_ran_once(await check_invariants(store, session_id))


async def test_a_brain_stopped_by_sigterm_hands_its_sessions_on_at_once(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, spawn: object
) -> None:
    """A rolling update: SIGTERM mid-session, with 30 s leases and no brain watching for
    dead peers, so only the stopped brain letting go (`Brain.close`) explains a quick
    takeover."""
    quiet = {"KEEL_PEER_CHECK_S": "0"}
    first = spawn(lease_s=30.0, extra_env=quiet)  # type: ignore[operator]
    session_id = await start_session(store, js, coding_spec(coding_script(slow_turn=2)))
    await wait_for_event(store, session_id, ModelResponse, count=2)
    standby = spawn(lease_s=30.0, extra_env=quiet)  # type: ignore[operator]
    held = await store.get_session(session_id)
    assert held.lease_owner == first.brain_id
    stopped = time.monotonic()
    first.signal(signal.SIGTERM)
    assert await asyncio.to_thread(first.wait, 10) == 0, first.output()
    while (await store.get_session(session_id)).lease_epoch == held.lease_epoch:
        assert time.monotonic() - stopped < 10, "no takeover before the lease's end"
        await asyncio.sleep(0.02)
    print(f"the stopped brain's session was taken after {time.monotonic() - stopped:.2f} s")
    info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=20)
    assert info.status == "completed", info
    assert info.lease_owner in (None, standby.brain_id)
    assert_ran_once(await check_invariants(store, session_id))
    assert "handed on 1 sessions" in first.output()


async def test_a_brain_restarted_in_place_takes_its_sessions_back_at_once(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, spawn: object
) -> None:
    first = spawn("brain-in-place", crash_at="after_send:2", lease_s=30.0)  # type: ignore[operator]
    session_id = await start_session(store, js, coding_spec(coding_script()))
    assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
    # With a 30 s lease, only reclaiming its own lease finishes the session in time.
    spawn("brain-in-place", lease_s=30.0)  # type: ignore[operator]
    info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=20)
    assert info.status == "completed", info
    assert_ran_once(await check_invariants(store, session_id))


async def test_two_brains_drive_twenty_sessions_one_brain_at_a_time(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, spawn: object
) -> None:
    # Leases long enough that neither brain loses one to a machine busy with other tests
    # (that would be a fence doing its job, not two brains sharing the work).
    brains = [spawn(lease_s=3.0), spawn(lease_s=3.0)]  # type: ignore[operator]
    sessions = [
        await start_session(store, js, coding_spec(coding_script(model_latency_ms=20)))
        for _ in range(20)
    ]
    for session_id in sessions:
        info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=120)
        assert info.status == "completed", info
        assert_ran_once(await check_invariants(store, session_id))
    assert all("fenced" not in brain.output() for brain in brains)


async def test_an_idempotent_call_whose_sandbox_died_runs_again_in_a_new_one(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    spawn: object,
    nats_server: NatsServer,
    tmp_path: Path,
) -> None:
    script = [
        {"tool_calls": [{"name": "write_file", "input": {"path": "a.txt", "content": "kept"}}]},
        {"tool_calls": [{"name": "read_file", "input": {"path": "a.txt"}}]},
        {"text": "done"},
    ]
    # Dies after dispatching the read (the 2nd dispatch), before sending it.
    first = spawn(crash_at="after_dispatched:2")  # type: ignore[operator]
    session_id = await start_session(store, js, coding_spec(script))
    assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
    await hands_host.close(destroy_sandboxes=True)  # the sandbox and its host are gone
    settings = msgspec.structs.replace(
        hands_host.settings, data_dir=tmp_path / "hands-2", host_id=new_id("hands-test")
    )
    replacement = HandsHost(settings, local_backend())
    await replacement.start()
    try:
        spawn(extra_env={"KEEL_LOST_AFTER_S": "1"})  # type: ignore[operator]
        info = await wait_for_status(store, session_id, {"completed", "failed"})
    finally:
        await replacement.close(destroy_sandboxes=True)
    assert info.status == "completed", info
    log = await check_invariants(store, session_id)
    read = [r.event for r in log if isinstance(r.event, ToolRequested)][1]
    dispatches = [
        r.event
        for r in log
        if isinstance(r.event, ToolDispatched) and r.event.call_id == read.call_id
    ]
    assert [d.attempt for d in dispatches] == [1, 2]
    assert dispatches[0].sandbox_id != dispatches[1].sandbox_id
    result = next(
        r.event for r in log if isinstance(r.event, ToolResult) and r.event.call_id == read.call_id
    )
    assert (result.outcome, result.output.strip()) == ("ok", "kept")  # from the checkpoint


# Where a brain dies in a session with context resets (`scenario.reset_script`): each step
# context resets add, at the pass where it matters most. The handoff read before iteration 1
# and 2 are recorded; iteration 2's start; each iteration's end (the check failed, the turns
# ran out); the check that found the test changed, before its restore; the restore, run and
# not recorded.
ITERATION_CRASH_POINTS = [
    "after_workspace_read:1",
    "after_workspace_read:2",
    "after_iteration_started:2",
    "after_iteration_ended:1",
    "after_iteration_ended:2",
    "after_workspace_checked:1",
    "after_restore:1",
]


@pytest.mark.parametrize("crash_at", ITERATION_CRASH_POINTS)
async def test_a_brain_killed_at_each_step_of_an_iteration_is_replaced_and_nothing_repeats(
    crash_at: str,
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    spawn: object,
) -> None:
    first = spawn(crash_at=crash_at, snapshot_every=5)  # type: ignore[operator]
    session_id = await start_session(store, js, reset_spec(reset_script()), "Make add() work.")
    assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
    spawn(snapshot_every=5)  # type: ignore[operator]
    info = await wait_for_status(store, session_id, {"completed", "failed", "paused"})
    assert info.status == "completed", info
    # No iteration started twice or lost, every call one outcome, the cheat's bash run once
    # (the completion check that passed counted its runs).
    assert_the_reset_session_went_as_scripted(await check_invariants(store, session_id))
