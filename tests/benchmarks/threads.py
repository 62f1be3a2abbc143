"""Benchmark threads: print what spawning a thread and coordinating workers cost (nothing
is asserted).

1. spawn to first model request: a coordinator spawns workers; from the parent's
   `thread.spawned` to the start of each thread's first model request (its response's
   `at` less the model's own duration), from the logs' own timestamps: p50, p99;
2. a coordinator with 10 workers: the coordinator's model spawns them at once, each worker
   answers in one turn, the coordinator then ends its turn; every model request takes
   `--latency-ms`. From the user's message to the coordinator's completion, less the model
   time on the critical path (the coordinator's two turns and one worker turn): the total
   overhead of keel's threads (spawn, hand-off between brains, collecting ten replies), p50.

Workers have no tools (no sandbox): the figures are keel's own. Two brains serve the work
queue; one nats-server, and the store on SQLite or PostgreSQL. From the repository root:

    python -m tests.benchmarks.threads --backend sqlite
    python -m tests.benchmarks.threads --backend postgres --quick
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
import nats
from nats.js import JetStreamContext

from brain.providers import Providers
from brain.service import Brain, ensure_work_stream, request_attention
from brain.settings import BrainSettings
from schemas import ModelResponse, SessionCreated, SessionStatus, ThreadSpawned, UserMessage, new_id
from session_store import EventStore, PostgresEventStore, SqliteEventStore
from tests.backends import POSTGRES_URL
from tests.brain.threads_scenario import coordinator_spec
from tests.nats_server import NatsServer


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def run_coordinator(
    store: EventStore, js: JetStreamContext, workers: int, latency_ms: float
) -> tuple[float, list[float]]:
    """One coordinator with `workers` workers, to completion: (total seconds, each thread's
    spawn-to-first-model-request seconds)."""
    session_id = new_id("ses")
    spec = coordinator_spec(
        session_id,
        workers=workers,
        message=False,
        judge=False,
        latency_ms=latency_ms,
        worker_tools=False,
    )
    await store.create_session(
        "bench", SessionCreated(spec=spec, title="coordinator"), session_id=session_id
    )
    started = time.time()
    await store.append_input(session_id, [UserMessage(text="Build the parts.")])
    await request_attention(js, session_id, "user.message")
    deadline = time.monotonic() + 120
    while True:
        info = await store.get_session(session_id)
        if info.status in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.005)
    assert info.status == "completed", info
    log = await store.read(session_id)
    done = next(r.at for r in reversed(log) if isinstance(r.event, SessionStatus))
    spawned = {r.event.thread_id: r.at for r in log if isinstance(r.event, ThreadSpawned)}
    first_requests = []
    for thread_id, at in spawned.items():
        thread_log = await store.read(thread_id, types=["model.response"])
        response = thread_log[0]
        assert isinstance(response.event, ModelResponse)
        first_requests.append(response.at - response.event.duration_ms / 1000 - at)
    return done - started, first_requests


async def main(backend: str, quick: bool, latency_ms: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="keel-bench-threads-"))
    nats_server = NatsServer(root / "nats")
    nats_server.start()
    schema = f"keel_bench_{secrets.token_hex(6)}"
    if backend == "sqlite":
        store: EventStore = SqliteEventStore(root / "keel.db")
    else:
        await postgres_execute(f"CREATE SCHEMA {schema}")
        store = PostgresEventStore(POSTGRES_URL, schema=schema)
    await store.migrate()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_work_stream(js)
    brains = []
    for _ in range(2):
        settings = BrainSettings(nats_url=nats_server.url, brain_id=new_id("brain"), lease_s=5.0)
        brain = Brain(settings, store=store, providers=Providers())
        await brain.start()
        brains.append(brain)
    try:
        rounds = 3 if quick else 10
        print(f"threads benchmark: {backend}, 2 brains, workers without tools")
        spawn_latency: list[float] = []
        for _ in range(rounds):
            _, first = await run_coordinator(store, js, 3, 0.0)
            spawn_latency += first
        print(
            f"1. spawn to first model request: p50 {ms(statistics.median(spawn_latency))}, "
            f"p99 {ms(percentile(spawn_latency, 0.99))} (n={len(spawn_latency)})"
        )
        overheads = []
        for _ in range(rounds):
            total, _ = await run_coordinator(store, js, 10, latency_ms)
            overheads.append(total - 3 * latency_ms / 1000)
        model_time = 3 * latency_ms / 1000
        print(
            f"2. coordinator with 10 workers: model time on the critical path "
            f"{ms(model_time)} (of {ms(12 * latency_ms / 1000)} in all), overhead p50 "
            f"{ms(statistics.median(overheads))}, max {ms(max(overheads))} (n={rounds})"
        )
    finally:
        for brain in brains:
            await brain.close()
        await nc.drain()
        await store.close()
        nats_server.stop()
        if backend == "postgres":
            await postgres_execute(f"DROP SCHEMA {schema} CASCADE")


async def postgres_execute(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="a few rounds, for a smoke run")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="each model request")
    args = parser.parse_args()
    asyncio.run(main(args.backend, args.quick, args.latency_ms))
