"""Benchmark the session store: print what appends, wakes and replays cost on one backend.

Figures, each printed on one line (nothing is asserted, nothing has a threshold):

1. sequential durable appends: one session, one fenced UserMessage per append (latency);
2. group commit: 100 sessions appending concurrently, (a) one ToolResult per append,
   (b) a two-event tool step per append (events/s and latency);
3. wake: latest snapshot + decode + read the tail + fold it, for sessions of 1k, 10k, 100k
   and 1M events whose logs the brain's own policy made (fold + decide + the handoff builder
   over generated turns with tool outputs of 1-30 KB, inline as the hands keep them;
   tests/brain/long_session.py), snapshotted the way a brain does, the last snapshot 50
   events behind the head (a brain snapshots every 100); with each size, (3a) the
   snapshot's size and what writing it cost, from nothing and 100 events after the one
   before (only the parts that changed are written), and (3b) what the session's
   compactions cost;
4. full replay: read a whole session and fold it from the start (events/s);
5. bytes on disk per event for tool call/result pairs.

Each run makes its own empty database and removes it afterwards: SQLite in a file in a
temporary directory; PostgreSQL in a fresh schema of the database at KEEL_TEST_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/postgres). Run from the repository root:

    python -m tests.benchmarks.store --backend sqlite
    python -m tests.benchmarks.store --backend postgres --quick

`--quick` runs fewer appends and only the 1k- and 10k-event sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import asyncpg

from brain.fold import initial_state, replay
from brain.state import STATE_VERSION, SessionState, decode_state, encode_state_parts
from schemas import (
    AgentSpec,
    Event,
    SessionCreated,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    UserMessage,
)
from session_store import EventStore, Lease, PostgresEventStore, SqliteEventStore
from tests.brain.long_session import CompactionCost, LongSession, long_spec

POSTGRES_URL = os.environ.get(
    "KEEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

OWNER = "bench"
LEASE_TTL = 3600.0
WARMUP_APPENDS = 100
WRITERS = 100
WAKE_REPEATS = 20
REPLAY_REPEATS = 3
# A brain snapshots every SNAPSHOT_EVERY events (KEEL_SNAPSHOT_EVERY's default); a woken
# session has TAIL events after its latest snapshot, half that on average.
SNAPSHOT_EVERY = 100
TAIL = 50
# Events per append while a session is built.
BUILD_BATCH = 1000
# The full replay (4) reads the largest session of at most this many events.
REPLAY_MAX_EVENTS = 100_000
PAIR_EVENTS = 10_000
PAIR_BATCH = 1000

COMMAND = {"command": "pytest -q tests/"}
TOOL_OUTPUT = (
    "..........F....................................                       [100%]\n"
    "FAILED tests/brain/test_fold.py::test_snapshot_plus_tail - AssertionError\n"
    "E   assert 3 == 4\n"
    "1 failed, 47 passed in 2.41s\n"
)


@dataclass(frozen=True)
class Config:
    sequential_appends: int
    appends_per_writer: int
    wake_sizes: tuple[int, ...]


FULL = Config(
    sequential_appends=2000,
    appends_per_writer=200,
    wake_sizes=(1000, 10_000, 100_000, 1_000_000),
)
QUICK = Config(sequential_appends=500, appends_per_writer=50, wake_sizes=(1000, 10_000))


# -- databases ------------------------------------------------------------------------------


class Database(Protocol):
    store: EventStore

    async def describe(self) -> str: ...

    async def events_bytes(self) -> tuple[int, str]:
        """Bytes the events table takes on disk, and how that was measured."""
        ...

    async def data_length(self, session_id: str) -> float:
        """The average length in bytes of a session's JSON `data` column."""
        ...


class SqliteDatabase:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: EventStore = SqliteEventStore(path)

    async def describe(self) -> str:
        return f"sqlite {sqlite3.sqlite_version} (WAL, synchronous=FULL), file {self.path}"

    async def events_bytes(self) -> tuple[int, str]:
        try:
            pages = await self._query(
                "SELECT SUM(pgsize) FROM dbstat"
                " WHERE name IN ('events', 'sqlite_autoindex_events_1')"
            )
        except sqlite3.OperationalError:  # SQLite built without the dbstat table
            files = (self.path, self.path.with_name(self.path.name + "-wal"))
            return sum(file.stat().st_size for file in files), "database + WAL file size"
        return int(pages), "dbstat pages of events + its primary-key index"

    async def data_length(self, session_id: str) -> float:
        query = "SELECT AVG(LENGTH(CAST(data AS BLOB))) FROM events WHERE session_id = ?"
        return float(await self._query(query, session_id))

    async def _query(self, sql: str, *params: object) -> object:
        def run() -> object:
            connection = sqlite3.connect(self.path)
            try:
                return connection.execute(sql, params).fetchone()[0]
            finally:
                connection.close()

        return await asyncio.to_thread(run)


class PostgresDatabase:
    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema
        self.store: EventStore = PostgresEventStore(url, schema=schema)

    async def describe(self) -> str:
        version = await self._fetchval("SHOW server_version")
        fsync = await self._fetchval("SHOW fsync")
        synchronous_commit = await self._fetchval("SHOW synchronous_commit")
        where = urlsplit(self.url)
        return (
            f"postgres {version} at {where.hostname}:{where.port}, schema {self.schema}"
            f" (fsync={fsync}, synchronous_commit={synchronous_commit})"
        )

    async def events_bytes(self) -> tuple[int, str]:
        size = await self._fetchval(f"SELECT pg_total_relation_size('{self.schema}.events')")
        return int(size), "pg_total_relation_size: heap + TOAST + primary-key index"

    async def data_length(self, session_id: str) -> float:
        query = f"SELECT AVG(octet_length(data)) FROM {self.schema}.events WHERE session_id = $1"
        return float(await self._fetchval(query, session_id))

    async def _fetchval(self, sql: str, *args: object) -> object:
        connection = await asyncpg.connect(self.url)
        try:
            return await connection.fetchval(sql, *args)
        finally:
            await connection.close()


@asynccontextmanager
async def sqlite_database() -> AsyncIterator[Database]:
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as directory:
        yield SqliteDatabase(Path(directory) / "keel.db")


@asynccontextmanager
async def postgres_database() -> AsyncIterator[Database]:
    schema = f"keel_bench_{secrets.token_hex(6)}"
    await _postgres_execute(f"CREATE SCHEMA {schema}")
    try:
        yield PostgresDatabase(POSTGRES_URL, schema)
    finally:
        await _postgres_execute(f"DROP SCHEMA {schema} CASCADE")


async def _postgres_execute(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def open_database(backend: str) -> AbstractAsyncContextManager[Database]:
    return sqlite_database() if backend == "sqlite" else postgres_database()


# -- events ---------------------------------------------------------------------------------


def user_message(index: int) -> list[Event]:
    return [UserMessage(text=f"message {index}")]


def tool_result(index: int) -> list[Event]:
    return [ToolResult(call_id=f"call_{index:07d}", output=TOOL_OUTPUT, duration_ms=2410.0)]


def tool_step(index: int) -> list[Event]:
    """What a brain appends when it decides on a call: the request and its dispatch."""
    call_id = f"call_{index:07d}"
    return [
        ToolRequested(call_id=call_id, name="bash", input=COMMAND),
        ToolDispatched(call_id=call_id, sandbox_id="sbx_bench"),
    ]


def tool_pair(index: int) -> list[Event]:
    call_id = f"call_{index:07d}"
    return [
        ToolRequested(call_id=call_id, name="bash", input=COMMAND),
        ToolResult(call_id=call_id, output=TOOL_OUTPUT, duration_ms=2410.0),
    ]


async def new_session(store: EventStore) -> str:
    created = SessionCreated(spec=AgentSpec(tools=["bash"]), title="benchmark")
    return (await store.create_session("bench", created)).session_id


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Writer:
    """A brain's write path: holds the session's lease, appends fenced at its own head."""

    store: EventStore
    lease: Lease
    head: int

    @classmethod
    async def claim(cls, store: EventStore, session_id: str) -> Writer:
        lease = await store.claim(session_id, OWNER, LEASE_TTL)
        return cls(store, lease, lease.head_seq)

    async def run(self, count: int, make_events: Callable[[int], list[Event]]) -> list[float]:
        """Make `count` appends one after another; return each one's latency in seconds."""
        latencies = []
        for index in range(count):
            events = make_events(index)
            started = time.perf_counter()
            appended = await self.store.append(
                self.lease.session_id, events, expect_seq=self.head, epoch=self.lease.epoch
            )
            self.head = appended.head_seq
            latencies.append(time.perf_counter() - started)
        return latencies


def percentiles(samples: list[float], *percents: int) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return ", ".join(f"p{percent} {cuts[percent - 1] * 1000:.2f} ms" for percent in percents)


async def bench_sequential(store: EventStore, appends: int) -> None:
    writer = await Writer.claim(store, await new_session(store))
    await writer.run(WARMUP_APPENDS, user_message)
    latencies = await writer.run(appends, user_message)
    print(
        f"1. sequential fenced appends, 1 UserMessage each ({appends} after"
        f" {WARMUP_APPENDS} warm-up): {percentiles(latencies, 50, 90, 99)} per append"
    )


async def bench_concurrent(
    store: EventStore, label: str, appends: int, make_events: Callable[[int], list[Event]]
) -> None:
    session_ids = [await new_session(store) for _ in range(WRITERS)]
    writers = await asyncio.gather(*(Writer.claim(store, sid) for sid in session_ids))
    started = time.perf_counter()
    results = await asyncio.gather(*(writer.run(appends, make_events) for writer in writers))
    elapsed = time.perf_counter() - started
    latencies = [latency for result in results for latency in result]
    per_append = len(make_events(0))
    print(
        f"2{label}. {WRITERS} sessions x {appends} concurrent fenced appends of {per_append}"
        f" event(s): {len(latencies) * per_append / elapsed:,.0f} events/s"
        f" ({len(latencies) / elapsed:,.0f} appends/s, {elapsed:.2f} s);"
        f" append latency {percentiles(latencies, 50, 99)}"
    )


@dataclass
class SnapshotWrite:
    """One snapshot a brain writes: its size, the bytes of it new to the store, and how long
    the write took."""

    seq: int
    total_bytes: int
    new_bytes: int
    seconds: float


@dataclass
class BuiltSession:
    session_id: str
    size: int
    seconds: float
    first: SnapshotWrite
    next: SnapshotWrite
    compactions: CompactionCost


async def save_snapshot(
    store: EventStore, state: SessionState, written: set[bytes]
) -> SnapshotWrite:
    """Save `state` as the brain does (a header, a part per message); `written` is the parts
    the store has of this session, to count the bytes this write adds."""
    header, parts = encode_state_parts(state)
    started = time.perf_counter()
    await store.save_snapshot(state.session_id, state.seq, header, STATE_VERSION, parts=parts)
    seconds = time.perf_counter() - started
    new_bytes = len(header) + sum(len(part) for part in set(parts) - written)
    written.clear()
    written.update(parts)
    return SnapshotWrite(
        seq=state.seq,
        total_bytes=len(header) + sum(len(part) for part in parts),
        new_bytes=new_bytes,
        seconds=seconds,
    )


async def build_session(store: EventStore, size: int) -> BuiltSession:
    """A session of `size` events made by the brain's policy (tests/brain/long_session.py),
    snapshotted twice as a brain does: SNAPSHOT_EVERY events apart, the last one TAIL
    events behind the head."""
    started = time.perf_counter()
    session = LongSession("", long_spec())
    events = session.events()
    created = next(events)
    assert isinstance(created, SessionCreated)
    session_id = (await store.create_session("bench", created)).session_id
    session.state.session_id = session_id
    snapshot_at = {size - TAIL - SNAPSHOT_EVERY, size - TAIL}
    head, batch, written, writes = 1, [], set[bytes](), []
    for event in events:
        batch.append(event)
        seq = head + len(batch)
        if len(batch) == BUILD_BATCH or seq in snapshot_at or seq == size:
            head = (await store.append_input(session_id, batch, expect_seq=head)).head_seq
            batch = []
            if head in snapshot_at:
                writes.append(await save_snapshot(store, session.state, written))
            if head == size:
                break
    first, then = writes
    return BuiltSession(
        session_id, size, time.perf_counter() - started, first, then, session.compactions
    )


async def wake(store: EventStore, session_id: str) -> SessionState:
    """What a brain does on taking a session: latest snapshot, then fold the events after it."""
    snapshot = await store.latest_snapshot(session_id, version=STATE_VERSION)
    state = (
        initial_state(session_id)
        if snapshot is None
        else decode_state(snapshot.state, snapshot.parts)
    )
    return replay(await store.read(session_id, after_seq=state.seq), state)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def bench_wake(store: EventStore, sizes: tuple[int, ...]) -> list[BuiltSession]:
    """Build a session of each size, then time wakes round-robin across them, so a drift
    in the machine's speed cannot pass for a difference between sizes."""
    sessions = [await build_session(store, size) for size in sizes]
    timings: list[list[float]] = [[] for _ in sizes]
    for _ in range(WAKE_REPEATS):
        for session, samples in zip(sessions, timings, strict=True):
            started = time.perf_counter()
            await wake(store, session.session_id)
            samples.append(time.perf_counter() - started)
    for session, samples in zip(sessions, timings, strict=True):
        first, then = session.first, session.next
        tail = await store.head(session.session_id) - then.seq
        print(
            f"3. wake (snapshot + decode + read tail + fold), {session.size:,} events:"
            f" p50 {_ms(statistics.median(samples))} of {WAKE_REPEATS}"
            f" (snapshot {then.total_bytes / 1024:.1f} KiB at seq {then.seq:,},"
            f" tail {tail} events; session built in {session.seconds:.1f} s)"
        )
        print(
            f"3a. snapshot at {session.size:,} events: {then.total_bytes / 1024:.1f} KiB;"
            f" written from nothing in {_ms(first.seconds)} ({first.total_bytes / 1024:.1f}"
            f" KiB), {SNAPSHOT_EVERY} events later in {_ms(then.seconds)}"
            f" ({then.new_bytes / 1024:.1f} KiB new)"
        )
        cost = session.compactions
        if cost.count:
            print(
                f"3b. compactions in {session.size:,} events: {cost.count}, handoff built"
                f" in p50 {_ms(statistics.median(cost.seconds))} (max {_ms(max(cost.seconds))}),"
                f" {statistics.median(cost.summary_chars) / 1024:.1f} KiB;"
                f" context {statistics.median(cost.tokens_before):,.0f} ->"
                f" {statistics.median(cost.tokens_after):,.0f} tokens (p50)"
            )
        else:
            print(f"3b. compactions in {session.size:,} events: none (under the window)")
    return sessions


async def timed_replay(store: EventStore, session_id: str) -> tuple[int, float, float]:
    """Read a whole session and fold it from the start: (events, read s, fold s)."""
    started = time.perf_counter()
    recorded = await store.read(session_id)
    read_done = time.perf_counter()
    replay(recorded, initial_state(session_id))
    return len(recorded), read_done - started, time.perf_counter() - read_done


async def bench_replay(store: EventStore, session_id: str) -> None:
    runs = [await timed_replay(store, session_id) for _ in range(REPLAY_REPEATS)]
    count = runs[0][0]
    read = statistics.median(run[1] for run in runs)
    fold = statistics.median(run[2] for run in runs)
    print(
        f"4. full replay of a {count:,}-event session (median of {REPLAY_REPEATS}):"
        f" read + fold {count / (read + fold):,.0f} events/s ({read + fold:.2f} s);"
        f" read only {count / read:,.0f} events/s; fold only {count / fold:,.0f} events/s"
    )


async def bench_bytes(database: Database) -> None:
    store = database.store
    before, method = await database.events_bytes()
    session_id = await new_session(store)
    head = 1
    for start in range(0, PAIR_EVENTS // 2, PAIR_BATCH // 2):
        pairs = range(start, start + PAIR_BATCH // 2)
        batch = [event for index in pairs for event in tool_pair(index)]
        head = (await store.append_input(session_id, batch, expect_seq=head)).head_seq
    after, _ = await database.events_bytes()
    per_event = (after - before) / head
    print(
        f"5. on disk, {head:,} events of ToolRequested + ToolResult ({len(TOOL_OUTPUT)}-char"
        f" output) pairs: {per_event:,.0f} bytes/event, {2 * per_event:,.0f} bytes/pair"
        f" ({method}, growth over this session);"
        f" JSON data column {await database.data_length(session_id):,.0f} bytes/event on average"
    )


# -- entry point ----------------------------------------------------------------------------


async def run(backend: str, quick: bool) -> None:
    config = QUICK if quick else FULL
    mode = "quick" if quick else "full"
    started = time.perf_counter()
    async with open_database(backend) as database:
        store = database.store
        await store.migrate()
        try:
            print(f"keel session store benchmark ({mode}): {await database.describe()}")
            print(
                f"machine: os.cpu_count()={os.cpu_count()}, Python {platform.python_version()},"
                f" {platform.platform()}"
            )
            await bench_sequential(store, config.sequential_appends)
            await bench_concurrent(store, "a", config.appends_per_writer, tool_result)
            await bench_concurrent(store, "b", config.appends_per_writer, tool_step)
            sessions = await bench_wake(store, config.wake_sizes)
            replayed = [s for s in sessions if s.size <= REPLAY_MAX_EVENTS]
            await bench_replay(store, replayed[-1].session_id)
            await bench_bytes(database)
        finally:
            await store.close()
    print(f"done in {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--quick", action="store_true", help="fewer appends, no 100k or 1M session")
    args = parser.parse_args()
    asyncio.run(run(args.backend, args.quick))


if __name__ == "__main__":
    main()
