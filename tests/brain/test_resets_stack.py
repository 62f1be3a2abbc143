"""A session with context resets on the real stack: NATS started by the test, real hands
(the local sandbox), the store on SQLite and on PostgreSQL, and a brain driving the scripted
model, which keeps what it was sent. The worker's edit of a test it did not write is refused,
its change by other means undone, and each iteration starts from the handoff files.

`test_recovery.py` SIGKILLs brain processes at each step of such a session."""

from __future__ import annotations

from nats.js import JetStreamContext

from brain.service import Brain
from hands import HandsHost
from schemas import IterationStarted
from session_store import EventStore
from tests.brain.conftest import brain_settings, start_session, wait_for_status
from tests.brain.invariants import check_invariants
from tests.brain.resets import (
    RecordingProviders,
    assert_the_reset_session_went_as_scripted,
    brief_sent,
    of,
)
from tests.brain.scenario import PLAN, reset_script, reset_spec
from tests.nats_server import NatsServer


async def test_the_worker_s_test_edits_are_refused_and_each_iteration_starts_from_the_handoff(
    store: EventStore, js: JetStreamContext, hands_host: HandsHost, nats_server: NatsServer
) -> None:
    providers = RecordingProviders()
    brain = Brain(brain_settings(nats_server), store=store, providers=providers)
    await brain.start()
    try:
        spec = reset_spec(reset_script())
        session_id = await start_session(store, js, spec, "Make add() work.")
        info = await wait_for_status(store, session_id, {"completed", "failed", "paused"})
    finally:
        await brain.close()
    assert info.status == "completed", info
    log = await check_invariants(store, session_id)
    assert_the_reset_session_went_as_scripted(log)
    # What each iteration's first model call was sent: its brief alone, from the handoff
    # files as the log recorded them (read from the sandbox before the call).
    starts = of(log, IterationStarted)
    for turn, started in zip((0, 2, 5), starts, strict=True):
        text = brief_sent(providers, turn)
        assert text.startswith(f"This is iteration {started.iteration} of a long task.")
        for file in started.handoff:
            if file.text is None:
                assert f"--- {file.path} (there is no such file yet) ---" in text
            else:
                assert f"--- {file.path} ---\n{file.text}" in text
    assert [f.path for f in starts[0].protected] == []
    assert [f.path for f in starts[1].protected] == ["tests/test_calc.py"]
    assert {f.path: f.text for f in starts[1].handoff}["PLAN.md"] == PLAN
    third = brief_sent(providers, 5)
    assert "Iteration 2 ended because it used the turns an iteration has." in third
    assert "undid your changes to protected test files" in third
    assert "--- PROGRESS.md ---\nthe tests pass" in third
