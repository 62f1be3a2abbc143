"""The official `anthropic` SDK's program survives keel's processes killed under it.

keel as separate processes (a brain, a hands host, a gateway, on a nats-server and a store of
the test's own, on each backend) runs sessions of the Managed Agents API, each turn one
`bash` call that appends a line to a file in the sandbox and counts the lines. Mid-call, the
brain is SIGKILLed and started again; in the next turn, mid-call, the gateway is SIGKILLed
under the SDK's open streams and started again where it was. The program only reconnects
its streams with `Last-Event-ID`, as the SDK lets it: every turn still ends idle, every call
has exactly one result, and each command ran once (its count says 1, then 2).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import anthropic
import httpx2
import pytest
from anthropic import AsyncAnthropic

from schemas import ToolDispatched, ToolResult
from session_store import EventStore, open_store
from tests.brain.invariants import check_invariants
from tests.brain.processes import BrainProcess
from tests.gateway.processes import GatewayProcess
from tests.nats_server import NatsServer
from tests.outages.deployment import Deployment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SESSIONS: Final = 3
# Long enough for the test to see every call dispatched and kill a process under it.
COMMAND: Final = "sleep 2; echo ran >> effects; wc -l < effects"
TOOL: Final = '/tool bash {"command": "' + COMMAND + '"}'
WITHIN_S: Final = 90.0
# What the SDK raises when the gateway dies under a request or a stream.
DROPPED: Final = (anthropic.APIConnectionError, httpx2.TransportError)


class Conversation:
    """One session, driven as a user of the SDK would, remembering the last event it saw."""

    def __init__(self, sdk: AsyncAnthropic, session_id: str) -> None:
        self.sdk = sdk
        self.session_id = session_id
        self.last_id = "sevt_0_0"
        self.replies: list[str] = []
        self.seen: list[str] = []
        self.reconnects = 0

    async def turn(self, text: str) -> None:
        await self.sdk.beta.sessions.events.send(
            self.session_id,
            events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}],
        )
        deadline = time.monotonic() + WITHIN_S
        while True:
            try:
                if await self._read_until_idle():
                    return
            except DROPPED:
                self.reconnects += 1  # the gateway went away: on after the last event seen
            assert time.monotonic() < deadline, (self.session_id, self.seen)
            await asyncio.sleep(0.2)

    async def _read_until_idle(self) -> bool:
        # Any: the SDK types a frame as any of its events, some without an id or content.
        stream: Any = await self.sdk.beta.sessions.events.stream(
            self.session_id, extra_headers={"Last-Event-ID": self.last_id}
        )
        async with stream:
            async for event in stream:
                assert event.id not in self.seen, f"{event.id} was streamed twice"
                self.seen.append(event.id)
                self.last_id = event.id
                if event.type == "agent.message":
                    self.replies.append(event.content[0].text)
                if event.type == "session.status_idle":
                    assert event.stop_reason.type == "end_turn", event
                    return True
        return False


async def until_dispatched(store: EventStore, session_ids: list[str], count: int) -> None:
    """Until every session has `count` calls out to the hands, none of them answered."""
    deadline = time.monotonic() + WITHIN_S
    while True:
        ready = 0
        for session_id in session_ids:
            events = [r.event for r in await store.read(session_id)]
            dispatched = sum(isinstance(e, ToolDispatched) for e in events)
            answered = sum(isinstance(e, ToolResult) for e in events)
            ready += dispatched == count and answered == count - 1
        if ready == len(session_ids):
            return
        assert time.monotonic() < deadline, "the calls were never dispatched"
        await asyncio.sleep(0.05)


async def run_turns(
    conversations: list[Conversation], text: str, during: Callable[[], Awaitable[None]]
) -> None:
    turns = [asyncio.create_task(c.turn(text)) for c in conversations]
    try:
        await during()
        await asyncio.gather(*turns)
    finally:
        for turn in turns:
            turn.cancel()


async def test_an_sdk_program_rides_through_a_killed_brain_and_gateway(
    tmp_path: Path, nats_server: NatsServer, store_url: str
) -> None:
    store = open_store(store_url)
    await store.migrate()
    key = (await store.create_api_key("acme")).key
    deployment = Deployment(store_url, nats_server, tmp_path)
    deployment.start()
    sdk = AsyncAnthropic(base_url=deployment.gateway.url, api_key=key, max_retries=4)
    try:
        env = await sdk.beta.environments.create(name="drill")
        agent = await sdk.beta.agents.create(
            name="counter", model="keel-scripted", tools=[{"type": "agent_toolset_20260401"}]
        )
        conversations = [
            Conversation(
                sdk, (await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)).id
            )
            for _ in range(SESSIONS)
        ]
        session_ids = [c.session_id for c in conversations]

        async def kill_the_brain() -> None:
            await until_dispatched(store, session_ids, 1)
            deployment.brain.kill()
            deployment.brain = BrainProcess(
                store_url=store_url,
                nats_url=nats_server.url,
                brain_id="brain-outage",
                log_path=tmp_path / "brain.log",
                lease_s=2.0,
            )
            await asyncio.to_thread(deployment.brain.start)

        async def kill_the_gateway() -> None:
            await until_dispatched(store, session_ids, 2)
            port = deployment.gateway.port
            deployment.gateway.kill()
            await asyncio.sleep(0.5)
            deployment.gateway = await asyncio.to_thread(
                GatewayProcess, store_url, nats_server.url, tmp_path / "gateway.log", port=port
            )

        await run_turns(conversations, TOOL, kill_the_brain)
        await run_turns(conversations, TOOL, kill_the_gateway)
        # The gateway died under every open stream, and each came back after its last event.
        assert all(c.reconnects for c in conversations), [c.reconnects for c in conversations]
        for conversation in conversations:
            session = await sdk.beta.sessions.retrieve(conversation.session_id)
            assert session.status == "idle", session
    except BaseException:
        print(deployment.logs())
        raise
    finally:
        await sdk.close()
        await deployment.stop()

    try:
        for conversation in conversations:
            # Each command ran once: its file had one line after the first, two after the second.
            counts = [r.split(": ", 1)[1].splitlines()[0] for r in conversation.replies]
            assert counts == ["1", "2"], conversation.replies
            log = await check_invariants(store, conversation.session_id)
            results: list[Any] = [r.event for r in log if isinstance(r.event, ToolResult)]
            assert len(results) == 2 and all(r.outcome == "ok" for r in results), results
    finally:
        await store.close()
