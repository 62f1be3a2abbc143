"""A brain's metrics (`brain.metrics`) after a real `wake` drives a session in memory
(`tests/brain/harness.py`): steps, wakes, model requests, and what the session spent, by model,
equal to the totals the store keeps on the session's row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brain._leased_log import LeasedLog
from brain.metrics import BrainMetrics
from brain.settings import BrainSettings
from schemas import Crashpoints, SessionStatus, SettingsError, settings_from_env
from session_store import EventStore, Fenced, SqliteEventStore
from tests.brain.harness import Harness, SimulatedCrash
from tests.brain.scenario import coding_script, compacting_spec


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = SqliteEventStore(tmp_path / "keel.db")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


def value(metrics: BrainMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_session_driven_to_its_end_is_counted_as_the_store_totals_it(
    store: EventStore,
) -> None:
    harness = Harness(store)
    metrics = harness.metrics
    session_id = await harness.start_session(compacting_spec(coding_script()))
    # A brain dies after a summary was asked for and before it was recorded: the restarted
    # one asks again, and only the recorded one counts, as the log counts it.
    with pytest.raises(SimulatedCrash):
        await harness.drive(session_id, crash_at="after_compaction_summary")
    assert (await harness.drive(session_id)).status == "completed"

    info = await store.get_session(session_id)
    tokens = {
        kind: value(metrics, "keel_model_tokens_total", model="scripted", kind=kind)
        for kind in ("input", "output", "cache_read", "cache_write")
    }
    assert tokens == {
        "input": info.usage.input_tokens,
        "output": info.usage.output_tokens,
        "cache_read": info.usage.cache_read_tokens,
        "cache_write": info.usage.cache_write_tokens,
    }
    assert tokens["input"] > 0
    assert value(metrics, "keel_model_cost_usd_total", model="scripted") == pytest.approx(
        info.cost_usd
    )
    summaries = value(metrics, "keel_brain_compactions_total", strategy="summary")
    assert summaries >= 1
    # Every request was timed, the one the crash lost included: six turns, the summaries
    # recorded and the one asked again.
    requests = value(metrics, "keel_model_request_seconds_count", model="scripted", result="ok")
    assert requests == 6 + summaries + 1
    steps = value(metrics, "keel_brain_step_seconds_count", action="CallModel")
    assert steps == 6
    assert value(metrics, "keel_brain_step_seconds_count", action="Dispatch") >= 1
    # Two runs woke it (the first died in its step); one ran to the end.
    assert value(metrics, "keel_brain_wake_seconds_count") == 2
    assert value(metrics, "keel_brain_runs_total", stopped="ended") == 1
    assert value(metrics, "keel_brain_fenced_total", operation="append") == 0


async def test_an_append_with_a_lease_taken_over_is_counted_as_fenced(store: EventStore) -> None:
    harness = Harness(store)
    session_id = await harness.start_session(compacting_spec(coding_script()))
    settings = harness.settings
    stale = await store.claim(session_id, settings.brain_id, settings.lease_s)
    await store.claim(session_id, settings.brain_id, settings.lease_s)  # a restarted brain
    log = LeasedLog(store, harness.nats, settings, Crashpoints(), stale, harness.metrics)
    await log.load()
    with pytest.raises(Fenced):
        await log.commit([SessionStatus(status="running")])
    assert value(harness.metrics, "keel_brain_fenced_total", operation="append") == 1


def test_a_malformed_metrics_address_stops_the_brain_at_start() -> None:
    with pytest.raises(SettingsError, match="KEEL_METRICS_ADDR"):
        settings_from_env(BrainSettings, {"KEEL_METRICS_ADDR": "9100"})
