"""Fencing and crash safety with real OS processes, on every backend.

Each test drives the store from child processes (`_worker.py`), so locking, durability and
fencing are exercised across process boundaries, as they are between brains.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schemas import UserMessage
from session_store import EventStore, LeaseHeld
from tests.backends import Backend, PostgresBackend, SqliteBackend
from tests.session_store.contract import CREATED

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start worker processes; any still running when the test ends is killed and reaped."""
    children: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.session_store._worker", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate()


class ProcessContract:
    """Subclasses provide the `backend` fixture; `store` (conftest.py) is migrated on it."""

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError

    async def test_racing_processes_win_each_seq_once(
        self, store: EventStore, backend: Backend, spawn: Spawn
    ) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        lease = await store.claim(sid, "shared", ttl=600)
        names = [f"w{i}" for i in range(4)]
        children = [spawn("race", backend.url, sid, str(lease.epoch), name, "40") for name in names]
        for child in children:
            assert child.stdout is not None and child.stdin is not None
            ready = await asyncio.to_thread(child.stdout.readline)
            assert ready == "ready\n", ready + child.stderr.read()  # type: ignore[union-attr]
        for child in children:
            child.stdin.write("go\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
        wins: dict[str, list[int]] = {}
        losses = 0
        for name, child in zip(names, children, strict=True):
            out, err = await asyncio.to_thread(child.communicate, timeout=120)
            assert child.returncode == 0, err
            lines = out.split()
            wins[name] = [int(n) for word, n in itertools.pairwise(lines) if word == "won"]
            losses += lines.count("lost")
        events = await store.read(sid)
        head = len(events)
        assert [e.seq for e in events] == list(range(1, head + 1))
        won = Counter(seq for seqs in wins.values() for seq in seqs)
        assert sorted(won) == list(range(2, head + 1)) and set(won.values()) == {1}
        for name, seqs in wins.items():
            for seq in seqs:
                # The event at each won seq is that writer's, appended at the head it read.
                assert events[seq - 1].event == UserMessage(text=f"{name}@{seq - 1}")
        # Every attempt either won or lost, and the processes really did collide.
        assert head - 1 + losses == len(names) * 40 and losses > 0
        assert (await store.verify(sid)).ok

    async def test_a_superseded_writer_is_fenced_for_every_later_append(
        self, store: EventStore, backend: Backend, spawn: Spawn
    ) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        child = spawn("zombie", backend.url, sid, "brain-a")
        assert child.stdout is not None
        first = await asyncio.to_thread(child.stdout.readline)
        assert first.startswith("claimed"), first + child.stderr.read()  # type: ignore[union-attr]
        await asyncio.to_thread(child.stdout.readline)  # at least one accepted append
        while True:
            try:
                taken = await store.claim(sid, "brain-b", ttl=600)
                break
            except LeaseHeld:
                await asyncio.sleep(0.05)
        head = await store.head(sid)
        for i in range(5):
            appended = await store.append(sid, [UserMessage(text=f"b{i}")], head, taken.epoch)
            head = appended.head_seq
        out, err = await asyncio.to_thread(child.communicate, timeout=60)
        assert child.returncode == 0, err
        assert out.split().count("fenced") == 20
        events = await store.read(sid)
        after_takeover = [e.event for e in events if e.seq > taken.head_seq]
        assert after_takeover == [UserMessage(text=f"b{i}") for i in range(5)]
        assert (await store.verify(sid)).ok

    async def test_sigkill_never_loses_an_acknowledged_append_or_tears_one(
        self, store: EventStore, backend: Backend, spawn: Spawn
    ) -> None:
        sid = (await store.create_session("acme", CREATED)).session_id
        rng = random.Random(int(os.environ.get("KEEL_TEST_SEED", "7")))
        acked: dict[str, tuple[int, int]] = {}
        for _ in range(20):
            child = spawn("append", backend.url, sid, "brain-1")
            assert child.stdout is not None
            # Wait for the first acknowledgement, so every kill lands mid-stream.
            first = await asyncio.to_thread(child.stdout.readline)
            assert first.startswith("ack"), first + child.stderr.read()  # type: ignore[union-attr]
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            child.send_signal(signal.SIGKILL)
            out, _ = await asyncio.to_thread(child.communicate, timeout=30)
            for line in [first, *out.splitlines()]:
                _, head, tag, size = line.split()
                acked[tag] = (int(head), int(size))

        # A new process opens the store, as after a crash.
        reopened = backend.make_store()
        try:
            events = await reopened.read(sid)
            assert (await reopened.verify(sid)).ok
        finally:
            await reopened.close()
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        groups: dict[str, list[tuple[int, str]]] = {}
        for e in events[1:]:
            tag, part = e.event.text.split()  # type: ignore[union-attr]
            groups.setdefault(tag, []).append((e.seq, part))
        for tag, (head, size) in acked.items():
            assert [seq for seq, _ in groups[tag]] == list(range(head - size + 1, head + 1))
        for tag, parts in groups.items():
            size = int(parts[0][1].split("/")[1])
            assert [p for _, p in parts] == [f"{i}/{size}" for i in range(size)], tag
        assert len(acked) >= 20


class TestSqliteProcesses(ProcessContract):
    @pytest.fixture
    def backend(self, sqlite_backend: SqliteBackend) -> SqliteBackend:
        return sqlite_backend


class TestPostgresProcesses(ProcessContract):
    @pytest.fixture
    def backend(self, postgres_backend: PostgresBackend) -> PostgresBackend:
        return postgres_backend
