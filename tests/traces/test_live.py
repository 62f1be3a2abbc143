"""The live tracer on the real `wake()` (`tests/brain/harness.py`: a real SQLite store, the
scripted model, fake hands): what it sends is what `keel trace` rebuilds from the log, and a
brain that dies loses only spans `keel trace` makes up, never sends one twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from brain.deps import BrainDeps
from brain.wake import wake
from schemas import ApprovalGranted, ApprovalRequested
from session_store import EventStore, SqliteEventStore
from tests.brain.harness import Answer, Harness, SimulatedCrash
from tests.brain.scenario import coding_script, coding_spec
from traces import project
from traces.export import keel_resource, readable
from traces.live import LiveTracer


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = SqliteEventStore(tmp_path / "keel.db")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


class TracingBrain:
    """One brain process with tracing on: its run's deps, its tracer and what it sent."""

    def __init__(self, harness: Harness, crash_at: str | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer = LiveTracer(harness.store, self.exporter)
        self.deps: BrainDeps = harness.deps(crash_at)
        self.deps.observer = self.tracer
        self.worker = asyncio.create_task(self.tracer.run())

    async def drive(self, session_id: str) -> str | None:
        while True:
            result = await wake(session_id, self.deps)
            if not result.again:
                return result.status

    async def stop(self) -> list[ReadableSpan]:
        """Closed as a brain closes: the queue projected, the spans flushed."""
        self.worker.cancel()
        await self.tracer.close()
        return list(self.exporter.get_finished_spans())

    def die(self) -> None:
        """SIGKILL: whatever the processor still held is gone."""
        self.worker.cancel()


def _identity(span: ReadableSpan) -> str:
    """All a span says, as one comparable string."""
    assert span.context is not None
    return repr(
        (
            span.context.trace_id,
            span.context.span_id,
            None if span.parent is None else span.parent.span_id,
            span.name,
            span.start_time,
            span.end_time,
            tuple((span.attributes or {}).items()),
            tuple((e.name, e.timestamp, tuple((e.attributes or {}).items())) for e in span.events),
        )
    )


async def _replayed(store: EventStore, session_id: str) -> list[str]:
    resource = keel_resource()
    spans = project(session_id, await store.read(session_id))
    return [_identity(readable(span, resource)) for span in spans]


def _harness(store: EventStore) -> Harness:
    harness = Harness(store, snapshot_every=5)
    harness.hands.default = Answer(output="ok")
    return harness


async def test_a_session_driven_by_wake_is_sent_as_keel_trace_rebuilds_it(
    store: EventStore,
) -> None:
    harness = _harness(store)
    brain = TracingBrain(harness)
    session_id = await harness.start_session(
        coding_spec(coding_script(), permissions={"edit_file": "ask"})
    )
    assert await brain.drive(session_id) == "waiting"
    [asked] = [r.event for r in await store.read(session_id) if r.type == "approval.requested"]
    assert isinstance(asked, ApprovalRequested)
    # The gateway's grant: read by the brain's next run, which held the lease before.
    await harness.add_input(session_id, ApprovalGranted(call_id=asked.call_id, by="alice"))
    assert await brain.drive(session_id) == "completed"
    sent = [_identity(span) for span in await brain.stop()]
    replayed = await _replayed(store, session_id)
    assert sorted(sent) == sorted(replayed)
    assert any("await_approval edit_file" in span for span in sent)


@pytest.mark.parametrize("point", ["after_model_response", "after_dispatched", "after_tool_result"])
async def test_a_brain_that_dies_loses_only_what_keel_trace_makes_up(
    store: EventStore, point: str
) -> None:
    harness = _harness(store)
    session_id = await harness.start_session(coding_spec(coding_script()))
    first = TracingBrain(harness, crash_at=f"{point}:2")
    with pytest.raises(SimulatedCrash):
        await first.drive(session_id)
    first.die()
    second = TracingBrain(harness)  # restarted: a new process, a new tracer
    assert await second.drive(session_id) == "completed"
    sent = [_identity(span) for span in await second.stop()]
    replayed = await _replayed(store, session_id)
    assert len(set(sent)) == len(sent) and set(sent) <= set(replayed)
    assert any("invoke_agent test" in span for span in sent) and len(sent) < len(replayed)
