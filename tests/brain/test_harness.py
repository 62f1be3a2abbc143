"""The real `wake()` driven in memory (`tests/brain/harness.py`): a real SQLite store, the
scripted model, in-memory NATS and hands. Fast enough to kill the brain at every crash point,
every time it passes there, and check every invariant after each takeover; and the hands' bad
days (calls nobody received, a call that never answers, a sandbox lost mid-call), input while
the model thinks, a cancel, a completion check and an approval's timer, in seconds.

The drills of `test_recovery.py` do the same with real processes and SIGKILL; these find the
same bugs sooner, and can afford every point and every pass."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from brain.crashpoints import ITERATION_POINTS, MERGE_POINTS, POINTS, THREAD_POINTS, WAIT_POINTS
from schemas import (
    TOOLS,
    WAITING_FOR_CLIENT,
    AgentSpec,
    ApprovalDenied,
    ApprovalExpired,
    CompletionCondition,
    JudgeVerdict,
    ModelResponse,
    ModelSpec,
    Recorded,
    SandboxSpec,
    SessionStatus,
    TextBlock,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    UserMessage,
    delta_subject,
    log_subject,
)
from session_store import EventStore, SqliteEventStore
from tests.brain.harness import Answer, Harness, SimulatedCrash
from tests.brain.invariants import check_invariants
from tests.brain.scenario import (
    COMPACTION_POINTS,
    RUN_TEST,
    coding_script,
    coding_spec,
    compacting_spec,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = SqliteEventStore(tmp_path / "keel.db")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


def scripted(turns: list[dict[str, Any]], **fields: Any) -> AgentSpec:
    return AgentSpec(
        model=ModelSpec(options={"script": turns}),
        tools=["bash", "read_file", "write_file"],
        **fields,
    )


def bash(command: str) -> dict[str, Any]:
    return {"name": "bash", "input": {"command": command}}


def of(log: list[Recorded], kind: type) -> list[Any]:
    return [r.event for r in log if isinstance(r.event, kind)]


def assert_no_mutating_call_ran_twice(harness: Harness) -> None:
    runs = Counter(call.call_id for call in harness.hands.ran if not TOOLS[call.name].idempotent)
    assert all(count == 1 for count in runs.values()), runs


async def wait_until_sent(harness: Harness, name: str, count: int = 1) -> None:
    deadline = time.monotonic() + 5
    while sum(call.name == name for call in harness.hands.ran) < count:
        assert time.monotonic() < deadline, f"no {count} {name} call(s) sent"
        await asyncio.sleep(0.005)


async def wait_until_running(store: EventStore, session_id: str) -> None:
    deadline = time.monotonic() + 5
    while (await store.get_session(session_id)).status != "running":
        assert time.monotonic() < deadline, "the session never ran"
        await asyncio.sleep(0.005)


async def test_a_coding_session_completes_and_each_call_runs_once(store: EventStore) -> None:
    harness = Harness(store)
    harness.hands.default = Answer(output="")
    harness.hands.answer("bash", {"command": RUN_TEST}, "failed", is_error=True, exit_code=1)
    harness.hands.answer("bash", {"command": RUN_TEST}, "passed")
    harness.hands.answer("bash", {"command": "wc -l < .runs"}, "2\n")
    session_id = await harness.start_session(coding_spec(coding_script()))
    result = await harness.drive(session_id)
    assert (result.stopped, result.status) == ("ended", "completed"), result
    log = await check_invariants(store, session_id)
    assert len(of(log, ModelResponse)) == 6
    requested = [event.call_id for event in of(log, ToolRequested)]
    assert [harness.hands.runs_of(call_id) for call_id in requested] == [1] * len(requested)
    assert [r.output for r in of(log, ToolResult) if r.output] == ["failed", "passed", "2\n"]
    # The first tool step waits for its sandbox (two writes); later ones are one write each.
    writes = [[r.type for r in write] for _, write in itertools.groupby(log, lambda r: r.at)]
    first_step = ["model.response", "tool.requested", "tool.requested"]
    assert writes[3:5] == [first_step, ["tool.dispatched", "tool.dispatched"]], writes
    assert ["model.response", "tool.requested", "tool.dispatched"] in writes
    assert sorted(harness.hands.acked) == sorted(requested)  # each outcome, once recorded
    assert harness.hands.destroyed == [harness.hands.provisioned[0][0]]  # the session ended
    # Each commit said "the log grew" on NATS; deltas went out live, never into the log.
    published = harness.nats.published
    heads = [int(m.data) for m in published if m.subject == log_subject(session_id)]
    assert heads[-1] == len(log) and heads == sorted(heads)
    assert any(m.subject == delta_subject(session_id) for m in published)


# A session with context resets passes the iteration points (`test_resets.py` crashes it
# there); a thread's points are passed only by a session with threads
# (`test_thread_crashes.py`).
@pytest.mark.parametrize(
    "point", sorted(POINTS - ITERATION_POINTS - THREAD_POINTS - MERGE_POINTS - WAIT_POINTS)
)
async def test_a_brain_crashed_at_every_pass_of_a_point_is_replaced_and_nothing_runs_twice(
    point: str, store: EventStore
) -> None:
    """Crash the n-th time the brain passes `point`, for n = 1, 2, ... until a run no longer
    gets there; each time a restarted brain finishes the session."""
    # A snapshot every 5 events lands several times in a session.
    harness = Harness(store, snapshot_every=5)
    spec = (compacting_spec if point in COMPACTION_POINTS else coding_spec)(coding_script())
    crashes = 0
    for n in itertools.count(1):
        session_id = await harness.start_session(spec)
        try:
            result = await harness.drive(session_id, crash_at=f"{point}:{n}")
        except SimulatedCrash:
            crashes += 1
            result = await harness.drive(session_id)  # the restarted brain
        assert result.status == "completed", (point, n, result)
        log = await check_invariants(store, session_id)
        assert len(of(log, ModelResponse)) == 6, (point, n)
        requested = [event.call_id for event in of(log, ToolRequested)]
        assert [harness.hands.runs_of(call_id) for call_id in requested] == [1] * len(requested), (
            point,
            n,
        )
        if crashes < n:
            break  # that run never passed the point an n-th time: every pass was tried
    assert crashes >= 1, f"no run reached {point}"
    assert_no_mutating_call_ran_twice(harness)


async def test_a_call_nobody_received_goes_to_a_fresh_sandbox_and_runs_once(
    store: EventStore,
) -> None:
    harness = Harness(store)
    harness.hands.nobody_receives("bash")
    session_id = await harness.start_session(scripted([{"tool_calls": [bash("make")]}, {}]))
    result = await harness.drive(session_id)
    assert result.status == "completed", result
    log = await check_invariants(store, session_id)
    dispatches = of(log, ToolDispatched)
    assert [d.attempt for d in dispatches] == [1, 2]
    assert dispatches[0].sandbox_id != dispatches[1].sandbox_id
    assert harness.hands.runs_of(dispatches[0].call_id) == 1


async def test_a_sandbox_that_failed_to_start_is_asked_for_again_before_the_call_fails(
    store: EventStore,
) -> None:
    harness = Harness(store)
    harness.hands.fail_provisions(2)  # two of the three tries
    session_id = await harness.start_session(scripted([{"tool_calls": [bash("make")]}, {}]))
    result = await harness.drive(session_id)
    assert result.status == "completed", result
    log = await check_invariants(store, session_id)
    [made] = of(log, ToolResult)
    assert made.outcome == "ok", made
    assert harness.hands.runs_of(made.call_id) == 1

    harness.hands.fail_provisions(3)  # every try: the call gets its one outcome, an error
    session_id = await harness.start_session(scripted([{"tool_calls": [bash("make")]}, {}]))
    result = await harness.drive(session_id)
    log = await check_invariants(store, session_id)
    [failed] = of(log, ToolResult)
    assert failed.is_error and "no sandbox for the call" in failed.output, failed
    assert harness.hands.runs_of(failed.call_id) == 0


async def test_a_call_in_a_lost_sandbox_ends_unknown_and_an_idempotent_one_runs_again(
    store: EventStore,
) -> None:
    harness = Harness(store, probe_every_s=0.02, lost_after_s=0.1)
    harness.hands.never_answer("bash")
    harness.hands.never_answer("read_file")
    write = {"name": "write_file", "input": {"path": "a", "content": "kept"}}
    read_a = {"name": "read_file", "input": {"path": "a"}}
    spec = scripted([{"tool_calls": [write]}, {"tool_calls": [bash("make"), read_a]}, {}])
    session_id = await harness.start_session(spec)
    run = asyncio.create_task(harness.drive(session_id))
    await wait_until_sent(harness, "read_file")
    [(sandbox_id, _)] = harness.hands.provisioned
    harness.hands.lose_sandbox(sandbox_id)
    result = await run
    assert result.status == "completed", result
    log = await check_invariants(store, session_id)
    wrote, make, read = of(log, ToolResult)
    assert (make.outcome, make.sandbox_lost) == ("unknown", True)
    assert (read.outcome, read.output) == ("ok", "ok")  # run again, in a fresh sandbox
    read_dispatches = [d for d in of(log, ToolDispatched) if d.call_id == read.call_id]
    assert [d.attempt for d in read_dispatches] == [1, 2]
    # The fresh sandbox starts from the last checkpoint the log names.
    assert harness.hands.provisioned[1] == (read_dispatches[1].sandbox_id, wrote.checkpoint)
    assert harness.hands.runs_of(make.call_id) == 1
    assert_no_mutating_call_ran_twice(harness)


async def test_a_cancel_stops_a_call_that_never_answers_and_records_its_outcome(
    store: EventStore,
) -> None:
    harness = Harness(store, hold_s=0.1)
    harness.hands.never_answer("bash")
    session_id = await harness.start_session(scripted([{"tool_calls": [bash("sleep 1d")]}]))
    waiting = await harness.drive(session_id)
    assert (waiting.stopped, waiting.status) == ("waiting", "waiting"), waiting
    assert waiting.wake_at is not None  # a timer, in case no outcome ever comes
    await harness.add_input(session_id, SessionStatus(status="cancelled", reason="by me"))
    result = await harness.drive(session_id)
    assert (result.stopped, result.status) == ("ended", "cancelled"), result
    log = await check_invariants(store, session_id)
    [outcome] = of(log, ToolResult)
    assert outcome.is_error and outcome.output == "cancelled"
    [dispatched] = of(log, ToolDispatched)
    assert harness.hands.destroyed == [dispatched.sandbox_id]  # the session is over


async def test_input_while_the_model_thinks_is_answered_next_and_the_response_kept(
    store: EventStore,
) -> None:
    harness = Harness(store)
    spec = scripted(
        [{"tool_calls": [bash("make")], "latency_ms": 300}, {"text": "made it; and noted"}]
    )
    session_id = await harness.start_session(spec)
    run = asyncio.create_task(harness.drive(session_id))
    await wait_until_running(store, session_id)  # the model is asked right after that
    await harness.add_input(session_id, UserMessage(text="also: note it down"))
    result = await run
    assert result.status == "completed", result
    log = await check_invariants(store, session_id)
    first, second = of(log, ModelResponse)
    first_seq = next(r.seq for r in log if r.event == first)
    note = next(r.seq for r in log if r.event == UserMessage(text="also: note it down"))
    assert first.context_seq < note < first_seq  # it saw no note, and was kept
    assert second.context_seq >= note
    [call] = harness.hands.ran
    assert harness.hands.runs_of(call.call_id) == 1


async def test_a_command_check_runs_in_the_sandbox_until_it_passes(store: EventStore) -> None:
    harness = Harness(store)
    check = {"command": "test -f ok"}
    harness.hands.answer("bash", check, "", is_error=True, exit_code=1)
    harness.hands.answer("bash", check, "")
    spec = scripted(
        [{"text": "Done, I think."}, {"tool_calls": [bash("touch ok")]}, {"text": "Now done."}],
        completion=CompletionCondition(kind="command", command="test -f ok"),
    )
    session_id = await harness.start_session(spec)
    result = await harness.drive(session_id)
    assert result.status == "completed", result
    log = await check_invariants(store, session_id)
    assert [v.passed for v in of(log, JudgeVerdict)] == [False, True]
    # The checks are the run's own calls: in no event, each run once.
    checks = [call for call in harness.hands.ran if call.input == check]
    assert len(checks) == 2 and len({c.call_id for c in checks}) == 2
    assert not {c.call_id for c in checks} & {e.call_id for e in of(log, ToolRequested)}


async def test_an_approval_nobody_gives_expires_on_its_timer(store: EventStore) -> None:
    harness = Harness(store)
    spec = scripted(
        [{"tool_calls": [bash("rm -rf build")]}, {"text": "I could not run it."}],
        permissions={"bash": "ask"},
        approval_timeout_s=0.2,
    )
    session_id = await harness.start_session(spec)
    waiting = await harness.drive(session_id)
    assert waiting.status == "waiting" and waiting.wake_at is not None, waiting
    result = await harness.drive_until(session_id, {"completed", "failed"})
    assert result.status == "completed", result
    log = await check_invariants(store, session_id)
    assert len(of(log, ApprovalExpired)) == 1
    assert harness.hands.ran == []


def last_text(log: list[Recorded]) -> str:
    response = of(log, ModelResponse)[-1]
    return "".join(b.text for b in response.content if isinstance(b, TextBlock))


async def test_keel_scripted_calls_a_tool_and_reports_its_result_or_its_denial(
    store: EventStore,
) -> None:
    harness = Harness(store)
    harness.hands.answer("bash", {"command": "ls"}, "a.txt\n")
    spec = AgentSpec(
        model=ModelSpec(provider="keel-scripted", name="keel-scripted"),
        tools=["bash", "write_file"],
        permissions={"write_file": "ask"},
    )
    ran = await harness.start_session(spec, '/tool bash {"command": "ls"}')
    result = await harness.drive(ran)
    assert result.status == "completed", result
    assert last_text(await check_invariants(store, ran)) == "bash returned: a.txt\n"

    denied = await harness.start_session(spec, '/tool write_file {"path": "x"}')
    waiting = await harness.drive(denied)
    assert waiting.status == "waiting", waiting
    [asked] = of(await store.read(denied), ToolRequested)
    await harness.add_input(denied, ApprovalDenied(call_id=asked.call_id, by="bob"))
    result = await harness.drive(denied)
    assert result.status == "completed", result
    # The words the brain records for a denied call are the ones keel-scripted looks for.
    log = await check_invariants(store, denied)
    assert last_text(log) == "write_file was denied: the approval was denied"
    assert [call.name for call in harness.hands.ran] == ["bash"]


async def test_a_self_hosted_session_never_asks_the_hands_for_a_sandbox(
    store: EventStore,
) -> None:
    """Its worker runs every call and posts the one result: keel's hands have no part."""
    harness = Harness(store)
    spec = scripted(
        [{"tool_calls": [bash("make")]}, {"text": "built"}],
        sandbox=SandboxSpec(backend="self_hosted"),
        turn_end="idle",
    )
    session_id = await harness.start_session(spec)
    waiting = await harness.drive(session_id)
    assert (waiting.status, waiting.reason) == ("waiting", WAITING_FOR_CLIENT)
    [call] = of(await store.read(session_id), ToolRequested)
    await harness.add_input(
        session_id, ToolResult(call_id=call.call_id, output="ok", from_client=True)
    )
    assert (await harness.drive(session_id)).status == "idle"
    assert harness.hands.provisioned == [] and harness.hands.ran == []
