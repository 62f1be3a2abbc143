"""The brain end to end: real NATS, a real store, real hands (bubblewrap), scripted model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext

from hands import HandsHost
from schemas import ModelResponse, SessionStatus, ToolResult
from session_store import EventStore
from tests.brain.conftest import start_session, wait_for_status, wait_released
from tests.brain.invariants import check_invariants
from tests.brain.scenario import coding_script, coding_spec


async def test_a_coding_session_runs_to_completed(
    store: EventStore,
    js: JetStreamContext,
    hands_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain()
    session_id = await start_session(store, js, coding_spec(coding_script()))
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    log = await check_invariants(store, session_id)
    results = [r.event for r in log if isinstance(r.event, ToolResult)]
    outputs = [r.output for r in results]
    assert any("AssertionError" in o for o in outputs), outputs  # the first run fails
    assert any("test passed" in o for o in outputs), "\n---\n".join(outputs)
    assert results[-1].output.splitlines()[0] == "2"  # two test runs, each exactly once
    responses = [r.event for r in log if isinstance(r.event, ModelResponse)]
    assert len(responses) == 6
    statuses = [r.event.status for r in log if isinstance(r.event, SessionStatus)]
    assert statuses[0] == "running" and statuses[-1] == "completed"
    await wait_released(store, session_id)
