"""Context resets and the test ratchet, driven by the real `wake()` in memory
(`tests/brain/harness.py`) with every call run by the real sandbox executor in a temporary
workspace: the three-iteration session of `scenario.reset_script`, what its model was sent,
and a brain crashed at every pass of every point of an iteration's steps (and of the others),
each time replaced with nothing lost and nothing run or started twice.

`test_recovery.py` drills the same with real processes, NATS, hands and both stores."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest

from brain.crashpoints import MERGE_POINTS, POINTS, THREAD_POINTS, WAIT_POINTS
from schemas import (
    TOOLS,
    ContextPolicy,
)
from session_store import EventStore, SqliteEventStore
from tests.brain.harness import Harness, SimulatedCrash
from tests.brain.invariants import check_invariants
from tests.brain.resets import (
    RecordingProviders,
    assert_the_reset_session_went_as_scripted,
    brief_sent,
)
from tests.brain.scenario import COMPACTION_POINTS, PLAN, reset_script, reset_spec

E = TypeVar("E")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = SqliteEventStore(tmp_path / "keel.db")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


def assert_ran_once(harness: Harness) -> None:
    """No call that changes the workspace ran twice (the harness's own calls may: a read,
    a restore of recorded bytes)."""
    runs = Counter(
        c.call_id for c in harness.hands.ran if c.name in TOOLS and not TOOLS[c.name].idempotent
    )
    assert all(count == 1 for count in runs.values()), runs


async def test_a_reset_session_refuses_the_test_edits_and_starts_each_iteration_from_the_handoff(
    store: EventStore, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    harness = Harness(store, workspace=workspace)
    providers = RecordingProviders()
    harness.providers = providers
    session_id = await harness.start_session(reset_spec(reset_script()), "Make add() work.")
    result = await harness.drive(session_id)
    assert (result.stopped, result.status) == ("ended", "completed"), result
    log = await check_invariants(store, session_id)
    assert_the_reset_session_went_as_scripted(log, workspace)
    assert_ran_once(harness)

    def brief(turn: int) -> str:
        return brief_sent(providers, turn)

    # Iteration 1: the goal, and no handoff files yet.
    first = brief(0)
    assert "iteration 1 " in first and "- Make add() work." in first
    assert "--- PLAN.md (there is no such file yet) ---" in first
    assert "Protected test files" not in first
    # Iteration 2: the plan its predecessor wrote, the test it may not touch.
    second = brief(2)
    assert "Iteration 1 ended because your work was checked and sent back." in second
    assert "The completion check failed (command)" in second
    assert f"--- PLAN.md ---\n{PLAN}" in second
    assert "Protected test files" in second and "tests/test_calc.py." in second
    # Iteration 3: why 2 ended, what was undone, and the (cheater's) progress file.
    third = brief(5)
    assert "Iteration 2 ended because it used the turns an iteration has." in third
    assert "undid your changes to protected test files" in third
    assert "--- PROGRESS.md ---\nthe tests pass" in third
    assert "Make add() work." in third


async def test_a_reset_session_that_also_compacts_goes_the_same_way(
    store: EventStore, tmp_path: Path
) -> None:
    """Compaction within an iteration (a window so small that every turn compacts) and the
    iterations' fresh contexts work together: the same iterations, refusals and restores,
    and every context rebuilt from a replay (the invariants)."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    harness = Harness(store, workspace=workspace, snapshot_every=5)
    context = ContextPolicy(window_tokens=1024, compact_at=0.1, keep_turns=1)
    spec = reset_spec(reset_script(), context=context)
    session_id = await harness.start_session(spec, "Make add() work.")
    result = await harness.drive(session_id)
    assert result.status == "completed", result
    log = await check_invariants(store, session_id)
    assert_the_reset_session_went_as_scripted(log, workspace)
    assert any(r.type == "context.compacted" for r in log)


# The n-th pass of each point, for n = 1, 2, ... until a run no longer gets there; a session
# that does not compact never passes compaction's (`test_harness.py` crashes it there).
@pytest.mark.parametrize(
    "point", sorted(POINTS - COMPACTION_POINTS - THREAD_POINTS - MERGE_POINTS - WAIT_POINTS)
)
async def test_a_reset_session_crashed_at_every_pass_of_a_point_loses_and_repeats_nothing(
    point: str, store: EventStore, tmp_path: Path
) -> None:
    crashes = 0
    for n in itertools.count(1):
        workspace = tmp_path / f"ws-{n}"
        workspace.mkdir()
        harness = Harness(store, workspace=workspace, snapshot_every=5)
        session_id = await harness.start_session(reset_spec(reset_script()), "Make add() work.")
        try:
            result = await harness.drive(session_id, crash_at=f"{point}:{n}")
        except SimulatedCrash:
            crashes += 1
            result = await harness.drive(session_id)  # the restarted brain
        assert result.status == "completed", (point, n, result)
        log = await check_invariants(store, session_id)
        assert_the_reset_session_went_as_scripted(log, workspace)
        assert_ran_once(harness)
        if crashes < n:
            break
    assert crashes >= 1, f"no run reached {point}"
