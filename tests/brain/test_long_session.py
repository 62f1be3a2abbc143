"""The proof of compaction on the real stack: a NATS server the tests start, the real store
(SQLite and PostgreSQL), real hands with the local sandbox, a brain in this process and the
deterministic scripted model. A 2,000-turn session whose every tool output is 1-30 KB stays
under its model's window by the brain's own compactions, every context it sent is the one a
replay of its log builds, and its snapshot stays the size of the live context."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from brain.compaction import compact_limit
from brain.service import Brain
from brain.state import STATE_VERSION
from hands import HandsHost
from schemas import AgentSpec, Budgets, ContextCompacted, ContextPolicy, ModelSpec, ToolResult
from session_store import EventStore
from tests.brain.conftest import brain_settings, start_session, wait_for_status
from tests.brain.contexts import RecordingProviders, assert_contexts_replay
from tests.brain.invariants import check_invariants
from tests.nats_server import NatsServer

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow

TURNS = 2000
FILES = 40
# Writes FILES files of 1-30 KB of text, log-uniformly spread, for the turns to read.
MAKE_FILES = (
    "import math, random\n"
    "r = random.Random(7)\n"
    f"for i in range({FILES}):\n"
    "    n = int(math.exp(r.uniform(math.log(1000), math.log(30000))))\n"
    "    line = lambda j: f'{i}:{j} collected 12 items; test_step_{j} PASSED in 0.01s\\n'\n"
    "    text = ''.join(line(j) for j in range(n // 40 + 1))[:n]\n"
    "    open(f'out{i}.txt', 'w').write(text)\n"
)
WINDOW = 64_000


def long_script() -> list[dict[str, Any]]:
    """Make the files, then read one each turn, then finish."""
    turns: list[dict[str, Any]] = [
        {
            "text": "Make the outputs to read.",
            "tool_calls": [
                {"name": "bash", "input": {"command": f"python3 -c {shlex.quote(MAKE_FILES)}"}}
            ],
        }
    ]
    turns += [
        {
            "text": f"Read output {turn % FILES}.",
            "tool_calls": [{"name": "read_file", "input": {"path": f"out{turn % FILES}.txt"}}],
        }
        for turn in range(1, TURNS)
    ]
    return [*turns, {"text": "Every output is read."}]


def long_spec() -> AgentSpec:
    return AgentSpec(
        model=ModelSpec(provider="scripted", name="scripted", options={"script": long_script()}),
        system_prompt="You read outputs, one a turn.",
        tools=["bash", "read_file"],
        budgets=Budgets(max_turns=TURNS + 10),
        context=ContextPolicy(window_tokens=WINDOW, compact_at=0.75, keep_turns=4),
    )


async def test_a_2000_turn_session_stays_under_its_window_and_replays_to_the_same_contexts(
    store: EventStore,
    nats_server: NatsServer,
    js: JetStreamContext,
    hands_host: HandsHost,
    tmp_path: Path,
) -> None:
    providers = RecordingProviders()
    brain = Brain(
        brain_settings(nats_server, snapshot_every=100, lease_s=5.0),
        store=store,
        providers=providers,
    )
    await brain.start()
    started = time.monotonic()
    try:
        spec = long_spec()
        session_id = await start_session(store, js, spec, text="Read every output.")
        info = await wait_for_status(store, session_id, {"completed", "failed"}, timeout_s=240)
    finally:
        await brain.close()
    assert info.status == "completed", info
    elapsed = time.monotonic() - started
    log = await check_invariants(store, session_id)
    outputs = [len(r.event.output) for r in log if isinstance(r.event, ToolResult)]
    assert len(outputs) == TURNS
    assert min(outputs[1:]) >= 1000 and max(outputs) <= 30_000
    compactions = [r.event for r in log if isinstance(r.event, ContextCompacted)]
    assert len(compactions) >= 5 and all(c.strategy == "handoff" for c in compactions)
    # Under the window, by the brain's measure of what it sent: the share that triggers a
    # compaction, which every request kept under.
    sent = [request.context_tokens for request in providers.requests]
    assert len(sent) == TURNS + 1
    assert max(sent) <= compact_limit(spec) < WINDOW, max(sent)
    assert assert_contexts_replay(log, providers.requests) == TURNS + 1
    # The snapshot holds the live context, not the history.
    snapshot = await store.latest_snapshot(session_id, STATE_VERSION)
    assert snapshot is not None
    size = len(snapshot.state) + sum(len(part) for part in snapshot.parts)
    history = sum(outputs)
    assert size < history / 20, (size, history)
    print(
        f"{TURNS} turns, {len(log)} events, {len(compactions)} compactions in {elapsed:.1f} s;"
        f" largest context sent {max(sent):,} tokens; snapshot {size / 1024:.0f} KiB"
        f" of {history / 1024 / 1024:.1f} MiB of outputs"
    )
