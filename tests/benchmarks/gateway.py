"""Benchmark the gateway: print what the HTTP API serves on loopback (nothing is asserted).

1. requests/s, (a) of `POST /v1/sessions/{id}/events` (one user.message), (b) of
   `GET /v1/sessions/{id}/events` (a page of 100 events): 32 concurrent httpx2 clients,
   each with its own connection and session, for a fixed count of requests (or a time
   budget, whichever ends first); latency p50/p99, and how busy each side was;
2. SSE fan-out: 500 clients streaming 100 live sessions (5 each); from an append's commit
   (the event's `at`), and from its writer having the acknowledgement, to each client
   receiving the event, p50/p99, for (a) input posted through the gateway, (b) appends by
   a writer that says "the log grew" on `keel.log.<session>` after its commit, as a brain
   does; and what 500 idle streams cost the gateway;
3. 200 sessions run to completion through the API at once (create with a message, stream
   until `completed`) by a brain process with the scripted model (one text-only turn, no
   model latency: what keel itself costs): wall time, per-session p50/p99.

The gateway (`python -m gateway`) and the brain (`python -m brain`) run in their own
processes, as in production, against a nats-server on a free loopback port and a SQLite
store in a temporary directory; this process is the load generator, so it never shares an
event loop with the server. Everything listens on 127.0.0.1 only. Run from the repository
root:

    python -m tests.benchmarks.gateway
    python -m tests.benchmarks.gateway --quick
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx2
import nats
from nats.aio.client import Client as NATS

from brain.service import ensure_work_stream
from schemas import TERMINAL_STATUSES, AgentSpec, SessionCreated, UserMessage, log_subject
from session_store import EventStore, SqliteEventStore
from tests.brain.processes import BrainProcess
from tests.gateway.sse import sse_events
from tests.nats_server import NatsServer, free_port

LOOPBACK: Final = "127.0.0.1"
TENANT: Final = "bench"
PAGE: Final = 100
# Input posted in figures 1 and 2: what a chat client sends.
MESSAGE: Final = {"events": [{"type": "user.message", "text": "Please also add a test."}]}
# Figure 2 appends to every session once per ROUND_S, spread evenly over it (a steady
# rate, not a burst), and gives up on an event its clients have not all seen by then.
ROUND_S: Final = 1.0
DELIVERY_TIMEOUT_S: Final = 15.0
# Figure 3: one text-only turn, then the session completes; no tools, so no hands.
SPEC: Final = {"model": {"provider": "scripted", "options": {"script": [{"text": "Done."}]}}}


@dataclass(frozen=True)
class Config:
    # 1: concurrent clients, requests per route, and the most seconds a route may take.
    clients: int
    requests: int
    budget_s: float
    # 2: live sessions, SSE clients on each, and appends to each session (one a ROUND_S).
    sessions: int
    streams_per_session: int
    rounds: int
    # 3: sessions run to completion at once.
    runs: int


FULL = Config(
    clients=32,
    requests=4000,
    budget_s=20.0,
    sessions=100,
    streams_per_session=5,
    rounds=8,
    runs=200,
)
QUICK = Config(
    clients=4, requests=100, budget_s=10.0, sessions=4, streams_per_session=2, rounds=2, runs=10
)


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux: /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """How busy the gateway and this process were over a stretch, as shares of one core:
    says which side of a load test was the bottleneck."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.wall = time.perf_counter()
        self.theirs = cpu_seconds(pid)
        self.ours = time.process_time()

    def gateway_share(self) -> float:
        return (cpu_seconds(self.pid) - self.theirs) / (time.perf_counter() - self.wall)

    def shares(self) -> str:
        ours = (time.process_time() - self.ours) / (time.perf_counter() - self.wall)
        return f"gateway CPU {self.gateway_share():.0%} of a core, load generator {ours:.0%}"


class GatewayProcess:
    """`python -m gateway`, configured by its environment as a user would run it."""

    def __init__(self, store_url: str, nats_url: str, log: Path) -> None:
        port = free_port()
        self.url = f"http://{LOOPBACK}:{port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--host", LOOPBACK, "--port", str(port)],
                env={**os.environ, "KEEL_STORE_URL": store_url, "KEEL_NATS_URL": nats_url},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx2.AsyncClient(base_url=self.url, timeout=1.0) as client:
            while True:
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx2.HTTPError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the gateway did not start:\n{self.log.read_text()}")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)


class Rig:
    """nats-server, a SQLite store and a gateway process; the store is also opened here,
    to set sessions up and, in figure 2b, to append as a brain would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nats = NatsServer(root / "nats")
        self.store_url = f"sqlite:///{root / 'keel.db'}"
        self.store: EventStore = SqliteEventStore(root / "keel.db")
        # Nothing here speaks TLS, but httpx2 builds an SSL context per client (loading the CA
        # bundle, ~50 ms) unless it is given one: seconds of load-generator CPU for 500.
        self.tls = ssl.create_default_context()

    async def start(self) -> None:
        self.nats.start()
        await self.store.migrate()
        self.nc: NATS = await nats.connect(self.nats.url)
        # The queue the gateway announces input on, as a brain (or `keel up`) makes it.
        await ensure_work_stream(self.nc.jetstream())
        self.gateway = GatewayProcess(self.store_url, self.nats.url, self.root / "gateway.log")
        await self.gateway.ready()
        key = await self.store.create_api_key(TENANT, "bench")
        self.headers = {"authorization": f"Bearer {key.key}"}

    async def close(self) -> None:
        await self.gateway.stop()
        await self.nc.drain()
        await self.store.close()
        self.nats.stop()

    def client(self, **options: Any) -> httpx2.AsyncClient:
        """One client: its own connection pool. One pool shared by hundreds of concurrent
        streams would make the load generator the bottleneck (httpcore rescans the whole pool
        on every request and response: seconds of CPU for a few hundred streams)."""
        return httpx2.AsyncClient(
            base_url=self.gateway.url, headers=self.headers, verify=self.tls, **options
        )

    async def sessions(self, count: int, events: int = 0) -> list[str]:
        """Idle sessions, each with `events` user messages after its creation."""
        session_ids = []
        for _ in range(count):
            info = await self.store.create_session(TENANT, SessionCreated(spec=AgentSpec()))
            if events:
                messages = [UserMessage(text=f"message {index}") for index in range(events)]
                await self.store.append_input(info.session_id, messages)
            session_ids.append(info.session_id)
        return session_ids


@asynccontextmanager
async def rig() -> AsyncIterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as directory:
        running = Rig(Path(directory))
        await running.start()
        try:
            yield running
        finally:
            await running.close()


# -- 1. requests/s ------------------------------------------------------------------------

Request = Callable[[httpx2.AsyncClient, str], Awaitable[httpx2.Response]]


async def post_message(client: httpx2.AsyncClient, session_id: str) -> httpx2.Response:
    return await client.post(f"/v1/sessions/{session_id}/events", json=MESSAGE)


async def get_page(client: httpx2.AsyncClient, session_id: str) -> httpx2.Response:
    return await client.get(f"/v1/sessions/{session_id}/events?after=0&limit={PAGE}")


async def drive(
    running: Rig,
    label: str,
    config: Config,
    pairs: list[tuple[httpx2.AsyncClient, str]],
    request: Request,
) -> None:
    """Every client sends `request` on its session, one after another, until the shared
    count is reached or the time budget is spent."""
    issued = itertools.count()
    latencies: list[float] = []
    deadline = time.perf_counter() + config.budget_s

    async def client_loop(client: httpx2.AsyncClient, session_id: str) -> None:
        while next(issued) < config.requests and time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await request(client, session_id)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()

    for client, session_id in pairs:  # warm up: every connection open, every path taken once
        (await request(client, session_id)).raise_for_status()
    meter = CpuMeter(running.gateway.process.pid)
    started = time.perf_counter()
    await asyncio.gather(*(client_loop(client, session_id) for client, session_id in pairs))
    elapsed = time.perf_counter() - started
    print(
        f"{label}, {len(pairs)} clients: {len(latencies) / elapsed:,.0f} requests/s"
        f" ({len(latencies)} in {elapsed:.2f} s); latency {percentiles(latencies)};"
        f" {meter.shares()}"
    )


async def requests_per_second(running: Rig, config: Config) -> None:
    # Each session already holds a full page, whatever the posts add.
    session_ids = await running.sessions(config.clients, events=PAGE)
    clients = [running.client(timeout=30.0) for _ in session_ids]
    try:
        pairs = list(zip(clients, session_ids, strict=True))
        await drive(
            running,
            "1a. POST /v1/sessions/{id}/events (1 user.message)",
            config,
            pairs,
            post_message,
        )
        await drive(
            running,
            f"1b. GET /v1/sessions/{{id}}/events (a page of {PAGE} events)",
            config,
            pairs,
            get_page,
        )
    finally:
        for client in clients:
            await client.aclose()


# -- 2. SSE fan-out -----------------------------------------------------------------------


class Watcher:
    """One SSE client: when each seq of its session reached it, and when it was committed.

    Times are wall-clock (time.time()), the clock the store stamps an event's `at` with when
    it commits it; every process here shares it."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.received: dict[int, float] = {}
        self.committed: dict[int, float] = {}
        self.caught_up = asyncio.Event()

    async def watch(self, running: Rig) -> None:
        # A stream can sit idle longer than httpx2's default 5 s read timeout.
        client = running.client(timeout=httpx2.Timeout(30.0, read=60.0))
        url = f"/v1/sessions/{self.session_id}/stream"
        async with client, client.stream("GET", url) as response:
            response.raise_for_status()
            async for event in sse_events(response):
                seq = int(event["id"])
                self.received[seq] = time.time()
                self.committed[seq] = json.loads(event["data"])["at"]
                self.caught_up.set()  # the backlog is the session.created event alone


Append = Callable[[str], Awaitable[int]]


@dataclass
class Delays:
    from_commit: list[float]
    from_ack: list[float]


async def fan_out(
    watchers: list[Watcher], streams: list[asyncio.Task[None]], rounds: int, append: Append
) -> Delays:
    """Append to every session once a round, spread evenly over it; each event's delay to
    each of its session's clients, from its commit and from the writer's acknowledgement."""
    session_ids = list(dict.fromkeys(watcher.session_id for watcher in watchers))
    acked: dict[str, dict[int, float]] = {session_id: {} for session_id in session_ids}

    async def one(session_id: str) -> None:
        seq = await append(session_id)
        acked[session_id][seq] = time.time()

    interval = ROUND_S / len(session_ids)
    begun = time.perf_counter()
    appends = []
    for index in range(rounds * len(session_ids)):
        await asyncio.sleep(begun + index * interval - time.perf_counter())
        appends.append(asyncio.create_task(one(session_ids[index % len(session_ids)])))
    await asyncio.gather(*appends)
    deadline = time.perf_counter() + DELIVERY_TIMEOUT_S
    while any(seq not in w.received for w in watchers for seq in acked[w.session_id]):
        for stream in streams:
            if stream.done():
                stream.result()  # raises what broke it
                raise RuntimeError("a stream ended while its session was live")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"events not streamed within {DELIVERY_TIMEOUT_S} s")
        await asyncio.sleep(0.05)
    delivered = [(w, seq, at) for w in watchers for seq, at in acked[w.session_id].items()]
    return Delays(
        from_commit=[w.received[seq] - w.committed[seq] for w, seq, _ in delivered],
        # A client can have an event before the writer has its acknowledgement (a gateway
        # announces the append before it answers): no delay past the ack.
        from_ack=[max(0.0, w.received[seq] - at) for w, seq, at in delivered],
    )


async def sse_fan_out(running: Rig, config: Config) -> None:
    session_ids = await running.sessions(config.sessions)
    watchers = [
        Watcher(session_id) for session_id in session_ids for _ in range(config.streams_per_session)
    ]
    poster = running.client(limits=httpx2.Limits(max_connections=config.sessions), timeout=30.0)

    async def post(session_id: str) -> int:
        response = await post_message(poster, session_id)
        response.raise_for_status()
        head_seq: int = response.json()["head_seq"]
        return head_seq

    async def append_and_publish(session_id: str) -> int:
        appended = await running.store.append_input(session_id, [UserMessage(text="next")])
        await running.nc.publish(log_subject(session_id), b"%d" % appended.head_seq)
        return appended.head_seq

    started = time.perf_counter()
    streams = [asyncio.create_task(watcher.watch(running)) for watcher in watchers]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(watcher.caught_up.wait() for watcher in watchers))
        opened = time.perf_counter() - started
        idle = CpuMeter(running.gateway.process.pid)
        await asyncio.sleep(2.0)
        print(
            f"2. {len(watchers)} SSE streams on {len(session_ids)} sessions open and caught"
            f" up in {opened:.2f} s; while idle, they keep the gateway at"
            f" {idle.gateway_share():.0%} of a core"
        )
        variants = [
            ("2a", "input posted through the gateway (POST .../events)", post),
            (
                "2b",
                "appends by a writer that publishes keel.log.<session> after each commit"
                " (as a brain does)",
                append_and_publish,
            ),
        ]
        for label, what, append in variants:
            meter = CpuMeter(running.gateway.process.pid)
            delays = await fan_out(watchers, streams, config.rounds, append)
            rate = len(session_ids) / ROUND_S
            print(
                f"{label}. fan-out of {what}: commit -> client has it"
                f" {percentiles(delays.from_commit)}, max {max(delays.from_commit) * 1000:.1f}"
                f" ms; acknowledged -> client has it {percentiles(delays.from_ack)};"
                f" {len(delays.from_ack)} deliveries ({rate:.0f} appends/s,"
                f" {config.streams_per_session * rate:.0f} deliveries/s; {meter.shares()})"
            )
    finally:
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        await poster.aclose()


# -- 3. sessions run to completion --------------------------------------------------------


async def run_session(running: Rig) -> float:
    """As one user: create a session with a message and stream it until it completes;
    seconds from the create request to the client seeing `completed`."""
    async with running.client(timeout=60.0) as client:
        started = time.perf_counter()
        created = await client.post("/v1/sessions", json={"spec": SPEC, "message": "go"})
        created.raise_for_status()
        session_id = created.json()["id"]
        async with client.stream("GET", f"/v1/sessions/{session_id}/stream") as response:
            response.raise_for_status()
            async for event in sse_events(response):
                if event.get("event") != "session.status":
                    continue
                status = json.loads(event["data"])["data"]["status"]
                if status == "completed":
                    return time.perf_counter() - started
                if status in TERMINAL_STATUSES:
                    raise RuntimeError(f"session {session_id} ended {status}: {event['data']}")
    raise RuntimeError(f"the stream of {session_id} ended before it completed")


async def sessions_to_completion(running: Rig, config: Config) -> None:
    brain = BrainProcess(
        store_url=running.store_url,
        nats_url=running.nats.url,
        brain_id="brain-bench",
        log_path=running.root / "brain.log",
        lease_s=2.0,
        snapshot_every=100,
        # The production sweep period, not the tests' faster one.
        extra_env={"KEEL_SWEEP_EVERY_S": "0.2"},
    )
    await asyncio.to_thread(brain.start)
    try:
        await run_session(running)  # warm up the gateway's and the brain's paths
        started = time.perf_counter()
        async with asyncio.timeout(120):
            latencies = await asyncio.gather(*(run_session(running) for _ in range(config.runs)))
        wall = time.perf_counter() - started
    finally:
        await asyncio.to_thread(brain.stop)
    print(
        f"3. {config.runs} sessions at once through the API (create with a message, stream"
        f" until completed; one brain process, KEEL_MAX_SESSIONS 64): wall {wall:.2f} s"
        f" ({config.runs / wall:,.1f} sessions/s); per session {percentiles(latencies)}"
    )


# -- entry point --------------------------------------------------------------------------


async def main(quick: bool) -> None:
    config = QUICK if quick else FULL
    started = time.perf_counter()
    print(
        f"keel gateway benchmark ({'quick' if quick else 'full'}): python -m gateway and"
        f" python -m brain in their own processes, SQLite (WAL, synchronous=FULL), loopback"
    )
    print(
        f"machine: os.cpu_count()={os.cpu_count()}, Python {platform.python_version()},"
        f" {platform.platform()}"
    )
    async with rig() as running:
        await requests_per_second(running, config)
        await sse_fan_out(running, config)
    # A fresh store: the sessions above hold input a brain would pick up and run.
    async with rig() as running:
        await sessions_to_completion(running, config)
    print(f"done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few clients and sessions")
    asyncio.run(main(parser.parse_args().quick))
