"""Benchmark the brain: print what a durable step and a recovery cost (nothing is asserted).

1. durable tool step: a scripted model with zero latency asks for one trivial call
   (read_file) per turn, on the local (bubblewrap) backend, SQLite with synchronous=FULL;
   time per tool step end to end (model response to the next one, from the log's own
   timestamps), p50/p99, and how much of it is the hands' round trip;
2. recovery, restart in place: a brain process is SIGKILLed mid-session and started again
   with the same id; from the kill to the next event appended, p50;
3. recovery, takeover: a brain process is SIGKILLed and another, already running, takes the
   session once it knows the first is dead (NATS has no responder for it), not waiting out
   its lease (KEEL_LEASE_S, 2 s by default); kill to next event, p50;
4. tool calls run twice across all of the kills (a counter in the workspace): must be 0;
5. time to the first model request with the Docker backend, lazy vs eager provisioning.

Starts its own nats-server on a free loopback port and a hands host process. Run from the
repository root:

    python -m tests.benchmarks.brain
    python -m tests.benchmarks.brain --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats

from brain.providers import ModelProvider, ModelRequest, Providers
from brain.service import Brain, ensure_work_stream, request_attention
from brain.settings import BrainSettings
from hands import HandsHost, HandsSettings
from hands.__main__ import make_backend
from schemas import (
    AgentSpec,
    ModelResponse,
    ModelSpec,
    SessionCreated,
    ToolDispatched,
    ToolResult,
    UserMessage,
    new_id,
)
from session_store import EventStore, SqliteEventStore
from tests.brain.processes import BrainProcess
from tests.nats_server import NatsServer

LEASE_S = 2.0


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def step_spec(turns: int, *, counting: bool = False) -> AgentSpec:
    """One call per turn, each a little different (the same call over and over is a loop,
    which pauses the session): a trivial read_file, or a bash that counts its runs."""

    def call(turn: int) -> dict[str, Any]:
        if counting:
            return {"name": "bash", "input": {"command": f"echo x >> .runs && : {turn}"}}
        return {"name": "read_file", "input": {"path": "notes.txt", "end_line": turn + 1}}

    script = [
        {"tool_calls": [{"name": "write_file", "input": {"path": "notes.txt", "content": "hi"}}]},
        *({"tool_calls": [call(turn)]} for turn in range(turns)),
        {"text": "done"},
    ]
    return AgentSpec(
        model=ModelSpec(options={"script": script}), tools=["bash", "read_file", "write_file"]
    )


class Rig:
    """nats-server, a SQLite store and a hands host, each as in production: the hands in
    their own process (sharing the brain's event loop would slow both)."""

    def __init__(self, root: Path, backend: str = "local") -> None:
        self.root = root
        self.backend = backend
        self.nats = NatsServer(root / "nats")
        self.store_path = root / "keel.db"
        self.store: EventStore = SqliteEventStore(self.store_path)
        self.hands_dir = root / "hands"
        self.hands: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.nats.start()
        await self.store.migrate()
        self.hands_settings = HandsSettings(
            nats_url=self.nats.url,
            data_dir=self.hands_dir,
            backend=self.backend,  # type: ignore[arg-type]
            host_id=new_id("hands-bench"),
        )
        self.hands = self._spawn_hands()
        while "ready" not in (self.root / "hands.log").read_text():
            if self.hands.poll() is not None:
                raise RuntimeError((self.root / "hands.log").read_text())
            await asyncio.sleep(0.02)
        self.nc = await nats.connect(self.nats.url)
        self.js = self.nc.jetstream()
        await ensure_work_stream(self.js)

    def _spawn_hands(self) -> subprocess.Popen[bytes]:
        log = (self.root / "hands.log").open("wb")
        hands = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hands",
                "--nats-url",
                self.nats.url,
                "--data-dir",
                str(self.hands_dir),
                "--backend",
                self.backend,
                "--host-id",
                self.hands_settings.host_id,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return hands

    async def close(self) -> None:
        await self.nc.drain()
        if self.hands is not None:
            self.hands.terminate()
            await asyncio.to_thread(self.hands.wait)
            # A stopped host leaves its sandboxes for its successor: be that successor, and
            # remove them.
            successor = HandsHost(self.hands_settings, make_backend(self.hands_settings))
            await successor.start()
            await successor.close(destroy_sandboxes=True)
        await self.store.close()
        self.nats.stop()

    def settings(self, **fields: Any) -> BrainSettings:
        return BrainSettings(
            store_url=f"sqlite:///{self.store_path}",
            nats_url=self.nats.url,
            brain_id=new_id("brain"),
            lease_s=LEASE_S,
            **fields,
        )

    async def session(self, spec: AgentSpec) -> str:
        info = await self.store.create_session("bench", SessionCreated(spec=spec))
        await self.store.append_input(info.session_id, [UserMessage(text="go")])
        await request_attention(self.js, info.session_id, "bench")
        return info.session_id

    async def finished(self, session_id: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while (await self.store.get_session(session_id)).status not in ("completed", "failed"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"session {session_id} did not finish")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def rig(backend: str = "local") -> AsyncIterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as directory:
        running = Rig(Path(directory), backend)
        await running.start()
        try:
            yield running
        finally:
            await running.close()


@contextlib.asynccontextmanager
async def in_process_brain(running: Rig, **fields: Any) -> AsyncIterator[Brain]:
    brain = Brain(running.settings(**fields), store=running.store, providers=Providers())
    await brain.start()
    try:
        yield brain
    finally:
        await brain.close()


async def durable_steps(turns: int) -> None:
    async with rig() as running, in_process_brain(running):
        await running.finished(await running.session(step_spec(3)))  # warm up
        session_id = await running.session(step_spec(turns))
        await running.finished(session_id)
        log = await running.store.read(session_id)
    responses = [r.at for r in log if isinstance(r.event, ModelResponse)]
    steps = [b - a for a, b in itertools.pairwise(responses[1:])]
    dispatched = {r.event.call_id: r.at for r in log if isinstance(r.event, ToolDispatched)}
    hands = [r.at - dispatched[r.event.call_id] for r in log if isinstance(r.event, ToolResult)]
    print(
        f"1. durable tool step, end to end: p50 {ms(statistics.median(steps))}, "
        f"p99 {ms(percentile(steps, 0.99))} over {len(steps)} steps "
        f"(hands round trip inside it: p50 {ms(statistics.median(hands))}; "
        f"brain and store: p50 {ms(statistics.median(steps) - statistics.median(hands))}; "
        f"{len(log) / len(responses):.1f} events per step)"
    )


async def kill_and_recover(
    running: Rig, in_place: bool, runs: int, counted: list[int]
) -> list[float]:
    """SIGKILL the brain driving a session, `runs` times; seconds from kill to next event."""
    rng = random.Random(7)
    samples: list[float] = []
    current = start_brain(running, new_id("brain"))
    session_id = await running.session(step_spec(2_000, counting=True))
    standby = None if in_place else start_brain(running, new_id("standby"))
    try:
        for _ in range(runs):
            if not await held_by(running, session_id, current.brain_id):
                raise RuntimeError("the session is not held by the brain to kill")
            # Let it work a while, then kill it between two random events.
            await asyncio.sleep(0.3 + rng.random() * 0.4)
            head = await running.store.head(session_id)
            killed_at = time.time()
            current.kill()
            # In place: the same id again at once. Takeover: the standby, once it knows.
            current = start_brain(running, current.brain_id) if standby is None else standby
            samples.append(await next_event_after(running, session_id, head, killed_at))
            if standby is not None:
                standby = start_brain(running, new_id("standby"))
    finally:
        for brain in (current, standby):
            if brain is not None:
                brain.stop()
    # Counted once nothing drives the session and the last call has finished.
    await asyncio.sleep(0.5)
    counted.append(await double_runs(running, session_id))
    return samples


def start_brain(running: Rig, brain_id: str) -> BrainProcess:
    return BrainProcess(
        store_url=f"sqlite:///{running.store_path}",
        nats_url=running.nats.url,
        brain_id=brain_id,
        log_path=running.root / f"{brain_id}.log",
        lease_s=LEASE_S,
        snapshot_every=100,
    ).start()


async def held_by(running: Rig, session_id: str, brain_id: str, wait_s: float = 10.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if (await running.store.get_session(session_id)).lease_owner == brain_id:
            return True
        await asyncio.sleep(0.01)
    return False


async def next_event_after(
    running: Rig, session_id: str, head: int, killed_at: float, timeout_s: float = 30.0
) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for record in await running.store.read(session_id, after_seq=head):
            if record.at > killed_at:
                return record.at - killed_at
        await asyncio.sleep(0.005)
    raise TimeoutError("no event after the kill")


async def double_runs(running: Rig, session_id: str) -> int:
    """Runs of the counting command beyond one per distinct call_id ever dispatched: more
    runs than call ids means some call ran twice."""
    log = await running.store.read(session_id)
    dispatched = {r.event.call_id for r in log if isinstance(r.event, ToolDispatched)}
    runs = sum(
        path.read_text().count("x\n")
        for path in running.hands_dir.glob("sandboxes/*/workspace/.runs")
    )
    return max(0, runs - (len(dispatched) - 1))  # the first call is the write_file


async def recovery(runs: int) -> None:
    counted: list[int] = []
    async with rig() as running:
        in_place = await kill_and_recover(running, True, runs, counted)
    async with rig() as running:
        takeover = await kill_and_recover(running, False, runs, counted)
    print(
        f"2. recovery, restart in place (kill to next event): p50 "
        f"{ms(statistics.median(in_place))}, max {ms(max(in_place))} over {len(in_place)} kills"
    )
    print(
        f"3. recovery, takeover by another brain (lease {LEASE_S:g} s): p50 "
        f"{ms(statistics.median(takeover))}, max {ms(max(takeover))} over {len(takeover)} kills"
    )
    print(f"4. tool calls run twice across {len(in_place) + len(takeover)} kills: {sum(counted)}")


class TimedProviders(Providers):
    """The scripted model, noting when each session's first request reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[str, float] = {}

    def provider_for(self, spec: ModelSpec) -> ModelProvider:
        return self

    async def complete(
        self, request: ModelRequest, on_delta: Callable[[str], None] | None = None
    ) -> ModelResponse:
        self.first.setdefault(request.session_id, time.perf_counter())
        return await self.scripted.complete(request, on_delta)


async def first_model_request(backend: str, sessions: int) -> None:
    figures = {}
    async with rig(backend) as running:
        for lazy in (True, False):
            providers = TimedProviders()
            brain = Brain(
                running.settings(lazy_hands=lazy), store=running.store, providers=providers
            )
            await brain.start()
            try:
                delays = []
                for _ in range(sessions):
                    started = time.perf_counter()
                    session_id = await running.session(step_spec(1))
                    await running.finished(session_id)
                    delays.append(providers.first[session_id] - started)
                figures[lazy] = statistics.median(delays)
            finally:
                await brain.close()
    print(
        f"5. first model request ({backend} sandbox, cold): lazy {ms(figures[True])}, "
        f"eager {ms(figures[False])} (p50 of {sessions} sessions)"
    )


async def main(quick: bool, backend: str) -> None:
    await durable_steps(30 if quick else 500)
    await recovery(2 if quick else 10)
    await first_model_request(backend, 2 if quick else 10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", default="docker", choices=["local", "docker"])
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        asyncio.run(main(arguments.quick, arguments.backend))
