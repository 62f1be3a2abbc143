"""Webhooks: an SDK program's sessions, sent to a real HTTP receiver on a loopback port,
each verified and parsed by the SDK's own `client.beta.webhooks.unwrap`; a receiver that
times out and fails is sent everything all the same, in order; two gateways do not both
send one endpoint's; one tenant's failing receiver does not hold another's back; and an
endpoint keel's operator does not allow is refused clearly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest
import standardwebhooks
from anthropic import AsyncAnthropic
from anthropic.types.beta import (
    BetaWebhookSessionRequiresActionEventData,
    BetaWebhookSessionStatusIdledEventData,
)

from brain.service import Brain
from gateway import WebhookSettings
from gateway.managed import WebhookDeliverer
from session_store import EventStore
from tests.gateway.test_managed_agents import MODEL, send_text, until_idle
from tests.gateway.webhook_receiver import Receiver, serving, set_endpoint, types_of


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(Receiver()) as running:
        yield running


@pytest.fixture
def webhook_settings(request: pytest.FixtureRequest, receiver: Receiver) -> WebhookSettings:
    """Webhooks allowed to the receiver's `/hooks` paths, sent and retried fast."""
    if hasattr(request, "param"):
        settings: WebhookSettings = request.param
        return settings
    return WebhookSettings(
        allowed_urls=receiver.url("/hooks"),
        timeout_s=1.0,
        poll_s=0.05,
        lease_s=5.0,
        retry_first_s=0.05,
        retry_max_s=0.2,
    )


@pytest.fixture
async def deliverer(
    store: EventStore, webhook_settings: WebhookSettings
) -> AsyncIterator[WebhookDeliverer]:
    running = WebhookDeliverer(store, webhook_settings)
    await running.start()
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def sdk(
    gateway_url: str, store: EventStore, brain: Brain, deliverer: WebhookDeliverer
) -> AsyncIterator[AsyncAnthropic]:
    key = await store.create_api_key("acme", "sdk")
    client = AsyncAnthropic(base_url=gateway_url, api_key=key.key, max_retries=0)
    try:
        yield client
    finally:
        await client.close()


async def test_an_sdk_program_s_sessions_arrive_signed_and_unwrap_with_the_sdk(
    sdk: AsyncAnthropic, receiver: Receiver
) -> None:
    endpoint = await set_endpoint(sdk, receiver.url("/hooks/acme"))
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    env = await sdk.beta.environments.create(name="hooks", config={"type": "self_hosted"})
    agent = await sdk.beta.agents.create(
        name="asks",
        model=MODEL,
        tools=[
            {
                "type": "agent_toolset_20260401",
                "default_config": {"permission_policy": {"type": "always_ask"}},
            }
        ],
    )
    asking = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)
    async with await sdk.beta.sessions.events.stream(asking.id) as stream:
        await send_text(sdk, asking.id, '/tool bash {"command": "rm -rf /"}')
        asked = await until_idle(stream)
        assert asked[-1].stop_reason.type == "requires_action"
        use = next(e for e in asked if e.type == "agent.tool_use")
        denial = {
            "type": "user.tool_confirmation",
            "tool_use_id": use.id,
            "result": "deny",
            "deny_message": "not that",
        }
        await sdk.beta.sessions.events.send(asking.id, events=[denial])
        await until_idle(stream)
    await sdk.beta.sessions.update(asking.id, title="denied")
    await sdk.beta.sessions.archive(asking.id)
    # A delete takes the log with it, and what was not sent of it: all but its deletion.
    await receiver.wait_for(lambda taken: "session.archived" in types_of(taken, asking.id))
    await sdk.beta.sessions.delete(asking.id)

    broke = await sdk.beta.sessions.create(
        environment_id=env.id,
        agent=agent.id,
        budget={"type": "limit", "max_list_cost": {"amount": "0"}},
    )
    await send_text(sdk, broke.id, "hello")

    ended = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)
    async with httpx2.AsyncClient(base_url=str(sdk.base_url)) as http:
        cancelled = await http.post(  # keel's own API: the SDK has no call that ends one
            f"/v1/sessions/{ended.id}/cancel",
            headers={"authorization": f"Bearer {sdk.api_key}"},
        )
    assert cancelled.status_code == 202, cancelled.text

    expected = {
        asking.id: [
            "session.created",
            "session.status_run_started",
            "session.status_idled",
            "session.requires_action",
            "session.status_run_started",
            "session.status_idled",
            "session.updated",
            "session.archived",
            "session.deleted",
        ],
        broke.id: [
            "session.created",
            "session.status_run_started",
            "session.status_idled",
            "session.budget_reached",
        ],
        ended.id: ["session.created", "session.status_terminated"],
    }
    await receiver.wait_for(
        lambda taken: all(types_of(taken, sid) == want for sid, want in expected.items())
    )
    for delivery in receiver.taken():
        event = sdk.beta.webhooks.unwrap(delivery.body, headers=delivery.headers, key=secret)
        assert event.type == "event" and event.id == delivery.headers["webhook-id"]
        assert event.data.organization_id == "acme" and event.created_at.year >= 2026
        assert delivery.path == "/hooks/acme"
        if event.data.type == "session.requires_action":
            assert isinstance(event.data, BetaWebhookSessionRequiresActionEventData)
        if event.data.type == "session.status_idled":
            assert isinstance(event.data, BetaWebhookSessionStatusIdledEventData)
    # Each was sent once: no receiver failed, no gateway died.
    ids = [d.headers["webhook-id"] for d in receiver.taken()]
    assert len(ids) == len(set(ids)) == sum(len(want) for want in expected.values())
    forged = receiver.taken()[0]
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        sdk.beta.webhooks.unwrap(
            forged.body.replace("acme", "evil"), headers=forged.headers, key=secret
        )


async def test_a_receiver_that_fails_at_first_gets_every_webhook_in_order(
    sdk: AsyncAnthropic, receiver: Receiver, store: EventStore
) -> None:
    receiver.stall_first, receiver.fail_first = 1, 3
    await set_endpoint(sdk, receiver.url("/hooks/flaky"), event_types=["session.status_idled"])
    env = await sdk.beta.environments.create(name="flaky")
    agent = await sdk.beta.agents.create(name="echo", model=MODEL)
    session = await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)
    async with await sdk.beta.sessions.events.stream(session.id) as stream:
        for turn in range(3):
            await send_text(sdk, session.id, f"turn {turn}")
            await until_idle(stream)
    await receiver.wait_for(lambda taken: len(types_of(taken, session.id)) == 3)
    assert types_of(receiver.taken(), session.id) == ["session.status_idled"] * 3
    failed = [d for d in receiver.deliveries if d.status != 200]
    assert [d.status for d in failed] == [0, 500, 500, 500]  # a timeout, then refusals
    # A retry is the same webhook: the same id, taken later.
    taken_ids = [d.headers["webhook-id"] for d in receiver.taken()]
    assert {d.headers["webhook-id"] for d in failed} <= set(taken_ids)
    assert taken_ids == sorted(taken_ids, key=lambda i: int(i.split("_")[-2]))
    # Only the types it takes: a deletion is not one, and is dropped, not sent.
    await sdk.beta.sessions.delete(session.id)
    endpoint = await store.get_webhook_endpoint("acme")
    assert endpoint is not None
    for _ in range(200):
        if not await store.webhook_backlog(endpoint):
            break
        await asyncio.sleep(0.05)
    assert await store.webhook_backlog(endpoint) == []
    assert len(receiver.taken()) == 3


async def test_two_gateways_never_both_send_an_endpoint_s_webhooks(
    sdk: AsyncAnthropic, receiver: Receiver, store: EventStore, webhook_settings: WebhookSettings
) -> None:
    other = WebhookDeliverer(store, webhook_settings)
    await other.start()
    try:
        await set_endpoint(sdk, receiver.url("/hooks/twice"))
        env = await sdk.beta.environments.create(name="twice")
        agent = await sdk.beta.agents.create(name="echo", model=MODEL)
        sessions = [
            (await sdk.beta.sessions.create(environment_id=env.id, agent=agent.id)).id
            for _ in range(3)
        ]
        for session_id in sessions:
            await send_text(sdk, session_id, "hi")
        await receiver.wait_for(
            lambda taken: all(len(types_of(taken, sid)) == 3 for sid in sessions)
        )
    finally:
        await other.close()
    ids = [d.headers["webhook-id"] for d in receiver.taken()]
    assert len(ids) == len(set(ids)) == 9


async def test_a_tenant_whose_receiver_fails_holds_no_other_back(
    sdk: AsyncAnthropic, receiver: Receiver, store: EventStore, gateway_url: str
) -> None:
    receiver.failing_paths.add("/hooks/down")
    other = await store.create_api_key("globex", "down")
    down = AsyncAnthropic(base_url=gateway_url, api_key=other.key, max_retries=0)
    try:
        await set_endpoint(down, receiver.url("/hooks/down"))
        await set_endpoint(sdk, receiver.url("/hooks/up"))
        sessions = []
        for client in (down, sdk):
            env = await client.beta.environments.create(name="e")
            agent = await client.beta.agents.create(name="a", model=MODEL)
            session = await client.beta.sessions.create(environment_id=env.id, agent=agent.id)
            sessions.append(session.id)
            await send_text(client, session.id, "hi")
    finally:
        await down.close()
    failing, working = sessions
    await receiver.wait_for(
        lambda taken: types_of(taken, working)[-1:] == ["session.status_idled"], within_s=10
    )
    assert types_of(receiver.taken(), failing) == []
    assert any(d.path == "/hooks/down" for d in receiver.deliveries)


async def test_an_endpoint_is_refused_clearly_unless_the_operator_allows_it(
    gateway_url: str, store: EventStore, receiver: Receiver
) -> None:
    key = (await store.create_api_key("acme")).key
    headers = {"authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(base_url=gateway_url, headers=headers) as http:
        missing = await http.get("/v1/webhook_endpoint")
        assert missing.status_code == 404 and "PUT /v1/webhook_endpoint" in missing.text
        refusals = {
            f"http://127.0.0.1:{receiver.port + 1}/hooks": 403,  # another port
            "http://localhost:1/hooks": 403,
            receiver.origin + "/admin": 403,
            receiver.origin + "/hooksmith": 403,
            f"http://user:pw@127.0.0.1:{receiver.port}/hooks": 400,
            receiver.url("/hooks/../admin"): 400,
            receiver.url("/hooks/%2e%2e/admin"): 400,
            receiver.url("/hooks#frag"): 400,
            "ftp://127.0.0.1/hooks": 400,
            "not a url": 400,
        }
        for url, status in refusals.items():
            refused = await http.put("/v1/webhook_endpoint", json={"url": url})
            assert refused.status_code == status, (url, refused.text)
            assert refused.json()["error"]["message"].startswith("url: "), refused.text
        unknown = await http.put(
            "/v1/webhook_endpoint",
            json={"url": receiver.url("/hooks"), "event_types": ["vault.created"]},
        )
        assert unknown.status_code == 400 and "vault.created" in unknown.text
        shapeless = await http.put("/v1/webhook_endpoint", json={"uri": receiver.url("/hooks")})
        assert shapeless.status_code == 422
        assert (await http.get("/v1/webhook_endpoint")).status_code == 404

        made = (await http.put("/v1/webhook_endpoint", json={"url": receiver.url("/hooks")})).json()
        moved = await http.put(
            "/v1/webhook_endpoint",
            json={"url": receiver.url("/hooks/v2"), "event_types": ["session.created"]},
        )
        assert moved.status_code == 200
        assert (moved.json()["id"], moved.json()["secret"]) == (made["id"], made["secret"])
        assert (await http.get("/v1/webhook_endpoint")).json() == moved.json()
        other = (await store.create_api_key("globex")).key
        theirs = await http.get(
            "/v1/webhook_endpoint", headers={"authorization": f"Bearer {other}"}
        )
        assert theirs.status_code == 404
        deleted = await http.delete("/v1/webhook_endpoint")
        assert deleted.json() == {"id": made["id"], "type": "webhook_endpoint_deleted"}
        assert (await http.delete("/v1/webhook_endpoint")).status_code == 404


@pytest.mark.parametrize("webhook_settings", [WebhookSettings()], indirect=True)
async def test_webhooks_are_off_until_the_operator_allows_a_url(
    gateway_url: str, store: EventStore, receiver: Receiver
) -> None:
    key = (await store.create_api_key("acme")).key
    async with httpx2.AsyncClient(
        base_url=gateway_url, headers={"authorization": f"Bearer {key}"}
    ) as http:
        refused = await http.put("/v1/webhook_endpoint", json={"url": receiver.url("/hooks")})
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert "KEEL_WEBHOOK_URLS" in refused.json()["error"]["message"]
