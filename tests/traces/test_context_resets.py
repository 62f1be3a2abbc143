"""A session with context resets in its traces: each iteration's start and end, and the test
ratchet's check and restore, are events of the turn span they happened in."""

from __future__ import annotations

from tests.golden.golden import read_log
from traces import project


def test_iterations_and_the_ratchet_are_events_of_their_turn() -> None:
    spans = project("context_resets", read_log("context_resets"))
    events = [
        (event.name, event.attributes)
        for span in spans
        if span.name.startswith("invoke_agent")
        for event in span.events
        if event.name.startswith(("iteration.", "workspace."))
    ]
    assert [name for name, _ in events] == [
        "iteration.started",
        "iteration.ended",
        "iteration.started",
        "workspace.checked",
        "workspace.restored",
        "iteration.ended",
        "iteration.started",
        "workspace.checked",
    ]
    started = [attributes for name, attributes in events if name == "iteration.started"]
    assert [a["keel.iteration"] for a in started] == [1, 2, 3]
    assert started[0]["keel.handoff_files"] == [] and started[0]["keel.protected_files"] == 0
    assert started[1]["keel.handoff_files"] == ["PLAN.md"]
    assert started[1]["keel.protected_files"] == 1
    ended = [attributes["keel.reason"] for name, attributes in events if name == "iteration.ended"]
    assert ended == ["goal_not_met", "max_turns"]
    restored = next(attributes for name, attributes in events if name == "workspace.restored")
    assert restored["keel.restored"] == ["tests/test_calc.py"]
