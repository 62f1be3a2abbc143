"""Benchmark the Managed Agents API with the official `anthropic` SDK as the client (nothing is
asserted): what a program on the SDK sees of `keel up` over loopback.

1. `sessions.create` and `events.send` (one user.message), one call after another: p50/p99;
2. a turn of `keel-scripted` with one `bash` call in a local sandbox: from `events.send` to
   the first streamed event, and to `session.status_idle`, p50/p99;
3. 500 concurrent SDK streams on 100 sessions: from a user.message's commit (its
   `processed_at`) to each stream having it, p50/p99;
4. `events.list` of a session of 10,000 events: one page of 1,000, p50, and all of them
   with the SDK's auto-pagination.

`keel up` (nats-server, a hands host with the local sandbox backend, a brain, a gateway, a
SQLite store) runs as its own process tree, as a user starts it; this process is the load
generator. Everything listens on 127.0.0.1 only. Run from the repository root:

    python -m tests.benchmarks.managed_agents
    python -m tests.benchmarks.managed_agents --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anthropic
import httpx2
from anthropic import AsyncAnthropic

from schemas import UserMessage
from session_store import SqliteEventStore
from tests.benchmarks.gateway import CpuMeter, percentiles
from tests.nats_server import free_port

MODEL: Final = "keel-scripted"
TOOL_TURN: Final = '/tool bash {"command": "echo hi"}'
LIST_PAGE: Final = 1000
BETA: Final = "managed-agents-2026-04-01"


@dataclass(frozen=True)
class Config:
    calls: int  # 1: creates and sends
    turns: int  # 2: one-tool turns
    sessions: int  # 3: sessions streamed
    streams_per_session: int
    rounds: int  # 3: messages sent to each session
    events: int  # 4: events in the listed session


FULL = Config(calls=300, turns=40, sessions=100, streams_per_session=5, rounds=3, events=10_000)
QUICK = Config(calls=10, turns=3, sessions=4, streams_per_session=2, rounds=1, events=2500)


class KeelUp:
    """`keel up` in a temporary directory, on a free port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (root / "keel-up.log").open("wb")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "deploy.cli", "up", "--data-dir", str(root / "keel")),
                *("--port", self.url.rsplit(":", 1)[1], "--sandbox", "local"),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready(self, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        key_path = self.root / "keel" / "api-key"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer,
            ):
                if answer.status == 200 and key_path.exists():
                    return key_path.read_text().strip()
            time.sleep(0.1)
        raise RuntimeError(f"keel up did not start:\n{(self.root / 'keel-up.log').read_text()}")

    def gateway_pid(self) -> int:
        """The gateway child of `keel up`, to say how busy it was."""
        pid = self.process.pid
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            if Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-m", b"gateway"]:
                return int(child)
        raise RuntimeError("keel up runs no gateway")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


@contextlib.asynccontextmanager
async def keel_up() -> AsyncIterator[tuple[KeelUp, str]]:
    with tempfile.TemporaryDirectory(prefix="keel-bench-ma-") as directory:
        running = KeelUp(Path(directory))
        try:
            key = await asyncio.to_thread(running.ready)
            yield running, key
        finally:
            await asyncio.to_thread(running.stop)


class Clients:
    """SDK clients sharing one TLS context: httpx builds one per client otherwise (~50 ms
    of load-generator CPU each, seconds for 500), though nothing here speaks TLS."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.tls = ssl.create_default_context()
        self.made: list[AsyncAnthropic] = []

    def new(self) -> AsyncAnthropic:
        http = anthropic.DefaultAsyncHttpxClient(verify=self.tls, timeout=60.0)
        client = AsyncAnthropic(base_url=self.url, api_key=self.key, http_client=http)
        self.made.append(client)
        return client

    async def close(self) -> None:
        for client in self.made:
            await client.close()


def at(event: Any) -> float:
    processed: dt.datetime = event.processed_at
    return processed.timestamp()


async def timed(samples: list[float], call: Callable[[], Awaitable[Any]]) -> Any:
    started = time.perf_counter()
    result = await call()
    samples.append(time.perf_counter() - started)
    return result


def message(text: str) -> list[Any]:
    return [{"type": "user.message", "content": [{"type": "text", "text": text}]}]


async def setup(sdk: AsyncAnthropic) -> tuple[str, str]:
    env = await sdk.beta.environments.create(name="bench")
    agent = await sdk.beta.agents.create(
        name="bench", model=MODEL, tools=[{"type": "agent_toolset_20260401"}]
    )
    return env.id, agent.id


# -- 1. create and send --------------------------------------------------------------------


async def create_and_send(sdk: AsyncAnthropic, config: Config) -> None:
    env_id, agent_id = await setup(sdk)
    creates: list[float] = []
    session_ids = []
    for _ in range(config.calls):
        session = await timed(
            creates, lambda: sdk.beta.sessions.create(environment_id=env_id, agent=agent_id)
        )
        session_ids.append(session.id)
    print(f"1a. sessions.create, {config.calls} one after another: {percentiles(creates)}")
    sends: list[float] = []
    for session_id in session_ids:
        started = time.perf_counter()
        await sdk.beta.sessions.events.send(session_id, events=message("hi"))
        sends.append(time.perf_counter() - started)
    print(
        f"1b. events.send (1 user.message), {config.calls} one after another: {percentiles(sends)}"
    )


# -- 2. a one-tool turn --------------------------------------------------------------------


async def tool_turns(sdk: AsyncAnthropic, config: Config) -> None:
    env_id, agent_id = await setup(sdk)
    first: list[float] = []
    idle: list[float] = []
    for _ in range(config.turns):
        session = await sdk.beta.sessions.create(environment_id=env_id, agent=agent_id)
        stream: Any = await sdk.beta.sessions.events.stream(session.id)
        async with stream:
            sent = time.perf_counter()
            await sdk.beta.sessions.events.send(session.id, events=message(TOOL_TURN))
            types = []
            async for event in stream:
                if not types:
                    first.append(time.perf_counter() - sent)
                types.append(event.type)
                if event.type == "session.status_idle":
                    idle.append(time.perf_counter() - sent)
                    break
        if "agent.tool_result" not in types:
            raise RuntimeError(f"the turn ran no tool: {types}")
    print(
        f"2. a keel-scripted turn with one bash call (local sandbox), {config.turns} turns:"
        f" events.send -> first streamed event {percentiles(first)};"
        f" -> session.status_idle {percentiles(idle)}"
    )


# -- 3. fan-out ----------------------------------------------------------------------------


class Watcher:
    def __init__(self, sdk: AsyncAnthropic, session_id: str) -> None:
        self.sdk, self.session_id = sdk, session_id
        self.delays: list[float] = []
        self.opened = asyncio.Event()
        self.messages = 0

    async def watch(self, rounds: int) -> None:
        stream: Any = await self.sdk.beta.sessions.events.stream(self.session_id)
        async with stream:
            self.opened.set()
            async for event in stream:
                if event.type == "user.message":
                    self.delays.append(time.time() - at(event))
                    self.messages += 1
                if event.type == "session.status_idle" and self.messages == rounds:
                    return


async def fan_out(clients: Clients, running: KeelUp, config: Config) -> None:
    sdk = clients.new()
    env_id, agent_id = await setup(sdk)
    session_ids = [
        (await sdk.beta.sessions.create(environment_id=env_id, agent=agent_id)).id
        for _ in range(config.sessions)
    ]
    watchers = [
        Watcher(clients.new(), session_id)
        for session_id in session_ids
        for _ in range(config.streams_per_session)
    ]
    streams = [asyncio.create_task(w.watch(config.rounds)) for w in watchers]
    try:
        async with asyncio.timeout(120):
            await asyncio.gather(*(w.opened.wait() for w in watchers))
            meter = CpuMeter(running.gateway_pid())
            for number in range(config.rounds):
                await asyncio.gather(
                    *(
                        sdk.beta.sessions.events.send(s, events=message(f"round {number}"))
                        for s in session_ids
                    )
                )
                await asyncio.sleep(1.0)
            await asyncio.gather(*streams)
    finally:
        for stream in streams:
            stream.cancel()
    delays = [d for w in watchers for d in w.delays]
    print(
        f"3. fan-out, {len(watchers)} SDK streams on {len(session_ids)} sessions,"
        f" {config.rounds} user.message each: commit -> stream has it {percentiles(delays)},"
        f" max {max(delays) * 1000:.1f} ms ({len(delays)} deliveries; {meter.shares()})"
    )


# -- 4. a long list ------------------------------------------------------------------------


async def long_list(sdk: AsyncAnthropic, key: str, running: KeelUp, config: Config) -> None:
    env_id, agent_id = await setup(sdk)
    session = await sdk.beta.sessions.create(environment_id=env_id, agent=agent_id)
    # Written straight to the store: a long history, without waiting for the brain to make it.
    store = SqliteEventStore(running.root / "keel" / "keel.db")
    try:
        for start in range(0, config.events, 1000):
            count = min(1000, config.events - start)
            await store.append_input(
                session.id, [UserMessage(text=f"message {start + i}") for i in range(count)]
            )
    finally:
        await store.close()
    pages: list[float] = []
    for _ in range(10):
        await timed(pages, lambda: sdk.beta.sessions.events.list(session.id, limit=LIST_PAGE))
    started = time.perf_counter()
    listed = [e async for e in sdk.beta.sessions.events.list(session.id, limit=LIST_PAGE)]
    every = time.perf_counter() - started
    # The same pages as plain HTTP: what keel takes, without the SDK building its models.
    raw: list[float] = []
    headers = {"authorization": f"Bearer {key}", "anthropic-beta": BETA}
    async with httpx2.AsyncClient(base_url=running.url, headers=headers) as http:
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": LIST_PAGE} | ({"page": cursor} if cursor else {})
            started = time.perf_counter()
            answer = await http.get(f"/v1/sessions/{session.id}/events", params=params)
            raw.append(time.perf_counter() - started)
            cursor = answer.raise_for_status().json()["next_page"]
            if cursor is None:
                break
    print(
        f"4. events.list of {len(listed):,} events: one page of {LIST_PAGE} {percentiles(pages)};"
        f" all of them, auto-paginated, {every * 1000:.0f} ms; each page as plain HTTP,"
        f" without the SDK's models, {percentiles(raw)}, all {sum(raw) * 1000:.0f} ms"
    )


async def main(quick: bool) -> None:
    config = QUICK if quick else FULL
    started = time.perf_counter()
    print(
        f"keel Managed Agents benchmark ({'quick' if quick else 'full'}): the anthropic SDK"
        f" {anthropic.__version__} against keel up (SQLite, local sandboxes), loopback"
    )
    print(
        f"machine: os.cpu_count()={os.cpu_count()}, Python {platform.python_version()},"
        f" {platform.platform()}"
    )
    async with keel_up() as (running, key):
        clients = Clients(running.url, key)
        try:
            sdk = clients.new()
            await create_and_send(sdk, config)
            await tool_turns(sdk, config)
            await fan_out(clients, running, config)
            await long_list(sdk, key, running, config)
        finally:
            await clients.close()
    print(f"done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few calls and sessions")
    asyncio.run(main(parser.parse_args().quick))
