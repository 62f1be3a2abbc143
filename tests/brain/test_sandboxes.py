"""No sandbox outlives its use: a hands host removes a sandbox idle past its limit (after a
final checkpoint, from which the session's next call starts a fresh one), and asks brains
about its quiet sandboxes, removing those no run of their session can reach any more.
Real NATS, a real store (both backends), a real brain and real hands (bubblewrap)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from brain.hands_client import HandsClient
from brain.service import request_attention
from hands import HandsHost, HandsSettings
from schemas import (
    AgentSpec,
    ApprovalGranted,
    ApprovalRequested,
    ModelSpec,
    SandboxSpec,
    SessionCreated,
    SessionStatus,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    new_id,
)
from session_store import EventStore, LeaseHeld
from tests.brain.conftest import start_session, wait_for_status, wait_released
from tests.brain.invariants import check_invariants
from tests.nats_server import NatsServer
from tests.sandboxes import local_backend

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow

IDLE_S = 2.0
CHECK_S = 0.3


def reaping_settings(nats_server: NatsServer, tmp_path: Path, **fields: Any) -> HandsSettings:
    values: dict[str, Any] = {
        "nats_url": nats_server.url,
        "data_dir": tmp_path / "hands",
        "backend": "local",
        "host_id": new_id("hands-test"),
        "sandbox_idle_s": IDLE_S,
        "sandbox_check_s": CHECK_S,
    }
    return HandsSettings(**(values | fields))


@pytest.fixture
async def reaping_host(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[HandsHost]:
    host = HandsHost(reaping_settings(nats_server, tmp_path), local_backend())
    await host.start()
    try:
        yield host
    finally:
        await host.close(destroy_sandboxes=True)


async def gone(host: HandsHost, sandbox_id: str, within_s: float) -> None:
    """The host serves it no more, and its directory is removed."""
    deadline = time.monotonic() + within_s
    while sandbox_id in host.sandboxes or (host.sandboxes_root / sandbox_id).exists():
        assert time.monotonic() < deadline, f"sandbox {sandbox_id} is still there"
        await asyncio.sleep(0.05)


async def events_of(store: EventStore, session_id: str, kind: type) -> list[Any]:
    return [r.event for r in await store.read(session_id) if isinstance(r.event, kind)]


async def test_a_session_idle_past_the_limit_holds_no_sandbox_and_resumes_with_its_files(
    store: EventStore,
    js: JetStreamContext,
    reaping_host: HandsHost,
    make_brain: Callable[..., Any],
) -> None:
    await make_brain()
    # The first call leaves a file, and a process that writes another after the call
    # ended: only the final checkpoint, taken when the sandbox is removed, has that one.
    # (It says when it has left the call's process group, which the call's end kills.)
    background = (
        "setsid sh -c 'touch .left; sleep 0.3; echo late > late.txt' >/dev/null 2>&1 & "
        "while [ ! -e .left ]; do sleep 0.01; done"
    )
    spec = AgentSpec(
        model=ModelSpec(
            options={
                "script": [
                    {
                        "tool_calls": [
                            {
                                "name": "bash",
                                "input": {"command": f"echo kept > kept.txt; {background}"},
                            }
                        ]
                    },
                    {
                        "tool_calls": [
                            {"name": "read_file", "input": {"path": "kept.txt"}},
                            {"name": "read_file", "input": {"path": "late.txt"}},
                        ]
                    },
                    {"text": "done"},
                ]
            }
        ),
        tools=["bash", "read_file"],
        # The reads wait for a person: the session sits idle, past the sandbox's limit.
        permissions={"read_file": "ask"},
    )
    session_id = await start_session(store, js, spec)
    await wait_for_status(store, session_id, {"waiting"})
    await wait_released(store, session_id)
    [first] = {d.sandbox_id for d in await events_of(store, session_id, ToolDispatched)}
    await gone(reaping_host, first, within_s=IDLE_S + 4 * CHECK_S + 5)
    assert not reaping_host.sandboxes  # a session waiting for a person holds none

    for asked in await events_of(store, session_id, ApprovalRequested):
        await store.append_input(session_id, [ApprovalGranted(call_id=asked.call_id, by="bo")])
    await request_attention(js, session_id, "approval")
    info = await wait_for_status(store, session_id, {"completed", "failed"})
    assert info.status == "completed", info
    results = {r.call_id: r for r in await events_of(store, session_id, ToolResult)}
    reads = [c for c in await events_of(store, session_id, ToolRequested) if c.name == "read_file"]
    assert [results[c.call_id].output for c in reads] == ["kept\n", "late\n"]
    # The reads went to the idle sandbox, found nobody, and ran in a fresh one.
    dispatched = [d for d in await events_of(store, session_id, ToolDispatched)]
    assert {d.sandbox_id for d in dispatched if d.call_id == reads[0].call_id} == {
        first,
        dispatched[-1].sandbox_id,
    }
    await check_invariants(store, session_id)


async def test_brains_name_the_sandboxes_no_run_can_reach_and_the_host_removes_them(
    store: EventStore,
    nats_server: NatsServer,
    tmp_path: Path,
    make_brain: Callable[..., Any],
) -> None:
    host = HandsHost(reaping_settings(nats_server, tmp_path, sandbox_idle_s=600.0), local_backend())
    await host.start()
    await make_brain()
    hands = HandsClient(host._nc)  # type: ignore[arg-type]
    spec = SandboxSpec()

    async def session() -> str:
        return (await store.create_session("acme", SessionCreated(spec=AgentSpec()))).session_id

    async def provision(session_id: str, epoch: int) -> str:
        return (await hands.provision(session_id, spec, None, lease_epoch=epoch)).sandbox_id

    async def dispatch(session_id: str, sandbox_id: str, epoch: int, expect_seq: int) -> None:
        call_id = new_id("call")
        await store.append(
            session_id,
            [
                ToolRequested(call_id=call_id, name="bash", input={"command": "true"}),
                ToolDispatched(call_id=call_id, sandbox_id=sandbox_id),
            ],
            expect_seq=expect_seq,
            epoch=epoch,
        )

    try:
        # A run that provisioned a sandbox and died before any event named it; another run
        # has the session now.
        abandoned = await session()
        first = await store.claim(abandoned, "brain-dead", ttl=0.05)
        orphan = await provision(abandoned, first.epoch)
        await asyncio.sleep(0.1)
        with contextlib.suppress(LeaseHeld):  # the brain's sweeper may have taken it first
            await store.claim(abandoned, "brain-next", ttl=60)
        assert (await store.get_session(abandoned)).lease_epoch > first.epoch
        # A finished session whose brain never said so to the hands.
        finished = await session()
        await store.append_input(finished, [SessionStatus(status="completed", reason="done")])
        of_finished = await provision(finished, 0)
        # A session whose log, in a later run, named another sandbox than an earlier run's.
        replaced = await session()
        earlier = await store.claim(replaced, "brain-live", ttl=60)
        old = await provision(replaced, earlier.epoch)
        lease = await store.claim(replaced, "brain-live", ttl=60)  # restarted in place
        new = await provision(replaced, lease.epoch)
        await dispatch(replaced, new, lease.epoch, expect_seq=1)
        # A run still going that has not named its sandbox yet.
        running = await session()
        live = await store.claim(running, "brain-live", ttl=60)
        not_yet_named = await provision(running, live.epoch)
        # A run replacing the sandbox its log names (nobody answered there): both are kept
        # while it holds the session, since it may be about to name the new one.
        replacing = await session()
        own = await store.claim(replacing, "brain-live", ttl=60)
        named = await provision(replacing, own.epoch)
        await dispatch(replacing, named, own.epoch, expect_seq=1)
        replacement = await provision(replacing, own.epoch)

        for sandbox_id in (orphan, of_finished, old):
            await gone(host, sandbox_id, within_s=10 * CHECK_S + 5)
        await asyncio.sleep(5 * CHECK_S)  # checked again and again: still kept
        assert set(host.sandboxes) == {new, not_yet_named, named, replacement}
    finally:
        await host.close(destroy_sandboxes=True)


async def test_with_no_brain_to_ask_only_the_idle_limit_removes_sandboxes(
    store: EventStore, nats_server: NatsServer, tmp_path: Path
) -> None:
    host = HandsHost(reaping_settings(nats_server, tmp_path), local_backend())
    await host.start()
    try:
        hands = HandsClient(host._nc)  # type: ignore[arg-type]
        info = await store.create_session("acme", SessionCreated(spec=AgentSpec()))
        await store.append_input(info.session_id, [SessionStatus(status="completed", reason="")])
        sandbox_id = (await hands.provision(info.session_id, SandboxSpec(), None)).sandbox_id
        await asyncio.sleep(IDLE_S - 0.5)
        assert sandbox_id in host.sandboxes  # nobody could say it is unreachable
        await gone(host, sandbox_id, within_s=CHECK_S * 4 + 2)
    finally:
        await host.close(destroy_sandboxes=True)


async def test_a_sandbox_a_call_was_sent_to_is_kept_past_its_idle_limit_until_the_outcome(
    store: EventStore,
    nats_server: NatsServer,
    tmp_path: Path,
    make_brain: Callable[..., Any],
) -> None:
    """A brain that died after sending a call asks the sandbox for it again when it comes
    back; removing the sandbox meanwhile would turn the call into an `unknown`."""
    host = HandsHost(reaping_settings(nats_server, tmp_path), local_backend())
    await host.start()
    await make_brain()
    try:
        hands = HandsClient(host._nc)  # type: ignore[arg-type]
        session_id = (
            await store.create_session("acme", SessionCreated(spec=AgentSpec()))
        ).session_id
        lease = await store.claim(session_id, "brain-gone", ttl=60)
        sandbox_id = (
            await hands.provision(session_id, SandboxSpec(), None, lease_epoch=lease.epoch)
        ).sandbox_id
        await store.append(
            session_id,
            [
                ToolRequested(call_id="call-1", name="bash", input={"command": "true"}),
                ToolDispatched(call_id="call-1", sandbox_id=sandbox_id),
            ],
            expect_seq=1,
            epoch=lease.epoch,
        )
        await store.release(lease)
        await asyncio.sleep(IDLE_S + 6 * CHECK_S)
        assert sandbox_id in host.sandboxes  # idle, but a call sent to it has no outcome
        await store.append_input(
            session_id, [ToolResult(call_id="call-1", output="", outcome="unknown")]
        )
        await gone(host, sandbox_id, within_s=IDLE_S + 6 * CHECK_S)
    finally:
        await host.close(destroy_sandboxes=True)
