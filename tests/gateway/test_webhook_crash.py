"""A gateway SIGKILLed while its receiver holds a webhook: once its lease lapses, another
gateway resumes from the store's cursor and sends that webhook again, under the same id, and
what follows; what was taken before the kill is not sent again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from anthropic import AsyncAnthropic

from brain.service import Brain
from session_store import EventStore
from tests.gateway.processes import GatewayProcess
from tests.gateway.test_managed_agents import MODEL, send_text
from tests.gateway.webhook_receiver import Receiver, serving, set_endpoint, types_of
from tests.nats_server import NatsServer

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow

LEASE_S = 1.5


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.kill()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    # The first idle of a session is held open: the gateway sending it dies waiting.
    held = Receiver(hold=lambda body: '"session.status_idled"' in body)
    async with serving(held) as running:
        yield running


def start_gateway(
    tmp_path: Path, nats_server: NatsServer, receiver: Receiver, name: str
) -> GatewayProcess:
    return GatewayProcess(
        f"sqlite:///{tmp_path / 'keel.db'}",
        nats_server.url,
        tmp_path / f"{name}.log",
        env={
            "KEEL_WEBHOOK_URLS": receiver.url("/hooks"),
            "KEEL_WEBHOOK_POLL_S": "0.1",
            "KEEL_WEBHOOK_LEASE_S": str(LEASE_S),
            "KEEL_WEBHOOK_RETRY_S": "0.1",
            "KEEL_WEBHOOK_RETRY_MAX_S": "0.5",
            # Longer than the test: the held webhook is still in flight when its gateway dies.
            "KEEL_WEBHOOK_TIMEOUT_S": "60",
        },
    )


async def test_a_gateway_killed_mid_delivery_is_followed_by_one_that_resumes(
    tmp_path: Path,
    nats_server: NatsServer,
    store: EventStore,
    brain: Brain,
    receiver: Receiver,
    gateways: list[GatewayProcess],
) -> None:
    key = (await store.create_api_key("acme")).key
    first = start_gateway(tmp_path, nats_server, receiver, "gateway-1")
    gateways.append(first)
    async with AsyncAnthropic(base_url=first.url, api_key=key, max_retries=0) as sdk:
        await set_endpoint(sdk, receiver.url("/hooks/acme"))
        env = await sdk.beta.environments.create(name="crash")
        agent = await sdk.beta.agents.create(name="echo", model=MODEL)
        session = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)
        await send_text(sdk, session.id, "one")
        await asyncio.wait_for(receiver.holding.wait(), timeout=20)
    before = types_of(receiver.taken(), session.id)
    assert before == ["session.created", "session.status_run_started"]
    first.kill()
    receiver.released.set()

    second = start_gateway(tmp_path, nats_server, receiver, "gateway-2")
    gateways.append(second)
    async with AsyncAnthropic(base_url=second.url, api_key=key, max_retries=0) as sdk:
        await send_text(sdk, session.id, "two")
    turns = ["session.status_run_started", "session.status_idled"] * 2
    await receiver.wait_for(
        lambda taken: types_of(taken, session.id) == ["session.created", *turns], within_s=30
    )
    held = next(d for d in receiver.deliveries if d.status == 0)
    held_id = json.loads(held.body)["id"]
    taken_ids = [d.headers["webhook-id"] for d in receiver.taken()]
    # The webhook in flight when its gateway died is sent again, under its id; what was
    # taken before is not: the second gateway resumed from the cursor, not the start.
    assert held_id in taken_ids
    assert len(taken_ids) == len(set(taken_ids)) == 5
