"""Record the golden logs from real runs: a real nats-server, hands host (bubblewrap), SQLite
store and brains, one fresh set per flow.

    .venv/bin/python -m tests.golden.record             # every flow
    .venv/bin/python -m tests.golden.record approval    # one

Each flow drives one session to its end and writes `tests/golden/<name>.jsonl`, its events as
the store keeps them. A log recorded again is a new history: regenerate its expected file
(`python -m tests.golden.golden <name>`) and commit both, having read the diff.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.js import JetStreamContext

from brain.providers import Providers
from brain.service import Brain, ensure_work_stream, request_attention
from hands import HandsHost, HandsSettings
from schemas import (
    AgentSpec,
    ApprovalGranted,
    ApprovalRequested,
    CompletionCondition,
    ModelSpec,
    UserMessage,
    new_id,
)
from session_store import EventStore, SqliteEventStore
from tests.brain.conftest import brain_settings, start_session, wait_for_status
from tests.brain.processes import BrainProcess
from tests.brain.scenario import coding_script, coding_spec, reset_script, reset_spec
from tests.golden.golden import write_log
from tests.nats_server import NatsServer
from tests.sandboxes import local_backend


@dataclass
class Rig:
    """One flow's world: NATS, a store, a hands host, and brains started on demand."""

    directory: Path
    nats_server: NatsServer
    store: EventStore
    js: JetStreamContext
    brains: list[Brain]
    processes: list[BrainProcess]

    @property
    def store_path(self) -> Path:
        return self.directory / "keel.db"

    async def brain(self) -> Brain:
        brain = Brain(brain_settings(self.nats_server), store=self.store, providers=Providers())
        await brain.start()
        self.brains.append(brain)
        return brain

    def brain_process(self, crash_at: str | None = None) -> BrainProcess:
        brain_id = new_id("brain")
        process = BrainProcess(
            store_url=f"sqlite:///{self.store_path}",
            nats_url=self.nats_server.url,
            brain_id=brain_id,
            log_path=self.directory / f"{brain_id}.log",
            crash_at=crash_at,
        )
        self.processes.append(process)
        return process.start()


@contextlib.asynccontextmanager
async def rig() -> AsyncIterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="keel-golden-") as name:
        directory = Path(name)
        server = NatsServer(directory / "nats")
        server.start()
        store = SqliteEventStore(directory / "keel.db")
        await store.migrate()
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_work_stream(js)
        settings = HandsSettings(
            nats_url=server.url, data_dir=directory / "hands", host_id=new_id("hands-golden")
        )
        hands = HandsHost(settings, local_backend())
        await hands.start()
        world = Rig(directory, server, store, js, [], [])
        try:
            yield world
        finally:
            for brain in world.brains:
                await brain.close()
            for process in world.processes:
                process.stop()
            await hands.close(destroy_sandboxes=True)
            await nc.drain()
            await store.close()
            server.stop()


def scripted(turns: list[dict[str, Any]], **fields: Any) -> AgentSpec:
    return AgentSpec(
        model=ModelSpec(options={"script": turns}),
        tools=["bash", "read_file", "write_file"],
        **fields,
    )


def bash(command: str) -> dict[str, Any]:
    return {"name": "bash", "input": {"command": command}}


async def finish(world: Rig, session_id: str) -> None:
    info = await wait_for_status(world.store, session_id, {"completed", "failed"})
    assert info.status == "completed", info


# -- the flows ------------------------------------------------------------------------------


async def coding(world: Rig) -> str:
    """The coding scenario: write, test (fails), fix, test (passes), count the runs."""
    await world.brain()
    session_id = await start_session(world.store, world.js, coding_spec(coding_script()))
    await finish(world, session_id)
    return session_id


async def approval(world: Rig) -> str:
    """A call the policy asks about: the session waits, holding no brain, until a grant."""
    await world.brain()
    spec = scripted(
        [{"tool_calls": [bash("echo approved >> ran.txt && cat ran.txt")]}, {"text": "done"}],
        permissions={"bash": "ask"},
    )
    session_id = await start_session(world.store, world.js, spec)
    asked = await wait_for_event(world.store, session_id, ApprovalRequested)
    await wait_for_status(world.store, session_id, {"waiting"})
    grant = ApprovalGranted(call_id=asked.call_id, by="alice")
    await world.store.append_input(session_id, [grant])
    await request_attention(world.js, session_id, "approval")
    await finish(world, session_id)
    return session_id


async def tool_error(world: Rig) -> str:
    """A tool the session lacks (answered with an error at once) and a command that fails."""
    await world.brain()
    spec = scripted(
        [
            {"tool_calls": [{"name": "rm_rf", "input": {}}, bash("echo oops >&2; exit 3")]},
            {"text": "Both failed; I stop here."},
        ]
    )
    session_id = await start_session(world.store, world.js, spec)
    await finish(world, session_id)
    return session_id


async def input_while_thinking(world: Rig) -> str:
    """Input recorded while the model thinks: the response is kept and the input answered
    by the next turn."""
    await world.brain()
    spec = scripted(
        [
            {"tool_calls": [bash("echo ran >> runs.txt && wc -l < runs.txt")], "latency_ms": 400},
            {"text": "ran it; and noted"},
        ]
    )
    session_id = await start_session(world.store, world.js, spec)
    await wait_for_status(world.store, session_id, {"running"})
    await asyncio.sleep(0.1)  # the model is thinking
    await world.store.append_input(session_id, [UserMessage(text="also: note it down")])
    await request_attention(world.js, session_id, "user.message")
    await finish(world, session_id)
    return session_id


async def command_check(world: Rig) -> str:
    """A completion check run in the sandbox: it fails, the model works on, it passes."""
    await world.brain()
    spec = scripted(
        [
            {"text": "Done, I think."},
            {"tool_calls": [{"name": "write_file", "input": {"path": "ok", "content": "y"}}]},
            {"text": "Now it is done."},
        ],
        completion=CompletionCondition(kind="command", command="test -f ok"),
    )
    session_id = await start_session(world.store, world.js, spec)
    await finish(world, session_id)
    return session_id


async def crash_takeover(world: Rig) -> str:
    """A brain process SIGKILLed right after sending a call (its second dispatch); another
    takes the session over once the lease expires and collects the call's outcome."""
    script = [
        {"tool_calls": [{"name": "write_file", "input": {"path": "a.txt", "content": "one"}}]},
        {"tool_calls": [bash("sleep 0.5 && cat a.txt")]},
        {"text": "It said one."},
    ]
    first = world.brain_process(crash_at="after_send:2")
    session_id = await start_session(world.store, world.js, coding_spec(script))
    assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
    world.brain_process()
    await finish(world, session_id)
    return session_id


async def context_resets(world: Rig) -> str:
    """Three iterations from fresh contexts: the initializer writes the plan and a test; a
    worker's edit of that test is refused and its bash change of it undone; the next worker
    fixes the code (`scenario.reset_script`)."""
    await world.brain()
    spec = reset_spec(reset_script())
    session_id = await start_session(world.store, world.js, spec, "Make add() work.")
    await finish(world, session_id)
    return session_id


FLOWS: dict[str, Callable[[Rig], Awaitable[str]]] = {
    "coding": coding,
    "approval": approval,
    "tool_error": tool_error,
    "input_while_thinking": input_while_thinking,
    "command_check": command_check,
    "crash_takeover": crash_takeover,
    "context_resets": context_resets,
}


async def wait_for_event(store: EventStore, session_id: str, kind: type) -> Any:
    deadline = time.monotonic() + 30
    while True:
        found = [r.event for r in await store.read(session_id) if isinstance(r.event, kind)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {kind.__name__} in 30 s"
        await asyncio.sleep(0.02)


def rows(store_path: Path, session_id: str) -> list[tuple[int, float, str, str]]:
    """The session's events exactly as stored (`data` as written, not re-encoded)."""
    connection = sqlite3.connect(store_path)
    try:
        return connection.execute(
            "SELECT seq, at, type, data FROM events WHERE session_id = ? ORDER BY seq",
            (session_id,),
        ).fetchall()
    finally:
        connection.close()


async def record(name: str) -> None:
    async with rig() as world:
        session_id = await FLOWS[name](world)
        # The brain lets go just after its last append; the log is complete already.
        write_log(name, rows(world.store_path, session_id))
    print(f"recorded {name}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Record golden logs from real runs.")
    parser.add_argument("names", nargs="*", help=f"flows (default: all): {', '.join(FLOWS)}")
    args = parser.parse_args(argv)
    if unknown := set(args.names) - FLOWS.keys():
        parser.error(f"unknown flows: {', '.join(sorted(unknown))}")
    for name in args.names or FLOWS:
        asyncio.run(record(name))


if __name__ == "__main__":
    main()
