"""What every backend keeps for webhooks: a tenant's endpoint, the leases gateways send
under, each session's backlog, durable cursors that only move forward, and the tombstone a
deleted session leaves. Mixed into each backend's test class with the main contract."""

from __future__ import annotations

import asyncio

from schemas import SessionStatus, UserMessage
from session_store import EventStore, WebhookBacklog, WebhookEndpoint
from tests.session_store.contract import CREATED

SECRET = "whsec_c2VjcmV0"


async def endpoint_of(store: EventStore, tenant: str = "acme") -> WebhookEndpoint:
    return await store.set_webhook_endpoint(
        tenant, f"https://hooks.example.com/{tenant}", [], new_secret=SECRET
    )


def live(backlog: list[WebhookBacklog]) -> dict[str, tuple[int, int, int]]:
    return {
        b.session_id: (b.next_seq, b.next_part, b.head_seq) for b in backlog if not b.deleted_at
    }


class WebhookContract:
    async def test_a_tenant_has_one_endpoint_that_keeps_its_id_secret_and_start(
        self, store: EventStore
    ) -> None:
        assert await store.get_webhook_endpoint("acme") is None
        made = await endpoint_of(store)
        assert made.endpoint_id.startswith("whep_") and made.secret == SECRET
        assert made.event_types == [] and made.created_at == made.updated_at
        moved = await store.set_webhook_endpoint(
            "acme", "https://elsewhere.example.com/", ["session.created"], new_secret="whsec_new"
        )
        assert (moved.endpoint_id, moved.secret, moved.created_at) == (
            made.endpoint_id,
            SECRET,
            made.created_at,
        )
        assert (moved.url, moved.event_types) == (
            "https://elsewhere.example.com/",
            ["session.created"],
        )
        assert await store.get_webhook_endpoint("acme") == moved
        assert await store.get_webhook_endpoint("globex") is None
        assert await store.delete_webhook_endpoint("acme")
        assert not await store.delete_webhook_endpoint("acme")
        again = await endpoint_of(store)
        assert again.endpoint_id != made.endpoint_id

    async def test_one_gateway_at_a_time_sends_to_an_endpoint(self, store: EventStore) -> None:
        acme, globex = await endpoint_of(store), await endpoint_of(store, "globex")
        first = await store.claim_webhook_endpoints("gw-1", ttl=0.3)
        assert sorted(e.tenant for e in first) == ["acme", "globex"]
        assert await store.claim_webhook_endpoints("gw-2", ttl=0.3) == []
        # Renewing keeps them; a hand of one takes the held one first.
        assert [e.endpoint_id for e in await store.claim_webhook_endpoints("gw-1", 30, 1)] == [
            acme.endpoint_id
        ]
        await asyncio.sleep(0.4)  # globex's lease lapses: gw-1 did not renew it
        assert [e.tenant for e in await store.claim_webhook_endpoints("gw-2", ttl=30)] == ["globex"]
        assert [e.endpoint_id for e in await store.claim_webhook_endpoints("gw-1", 30)] == [
            acme.endpoint_id
        ]
        await store.release_webhook_endpoints("gw-1")
        taken = await store.claim_webhook_endpoints("gw-2", ttl=30)
        assert sorted(e.endpoint_id for e in taken) == sorted(
            [acme.endpoint_id, globex.endpoint_id]
        )

    async def test_claims_at_once_never_share_an_endpoint(self, store: EventStore) -> None:
        for i in range(6):
            await endpoint_of(store, f"tenant-{i}")
        hands = await asyncio.gather(
            *(store.claim_webhook_endpoints(f"gw-{i}", ttl=30, limit=4) for i in range(4))
        )
        held = [e.tenant for hand in hands for e in hand]
        assert sorted(held) == sorted(set(held)) and len(held) == 6

    async def test_the_backlog_is_what_the_cursor_has_not_passed(self, store: EventStore) -> None:
        before = await store.create_session("acme", CREATED)
        await asyncio.sleep(0.01)
        endpoint = await endpoint_of(store)
        # Untouched since the endpoint was made: nothing for it.
        assert live(await store.webhook_backlog(endpoint)) == {}
        made = await store.create_session("acme", CREATED)
        await store.create_session("globex", CREATED)
        assert live(await store.webhook_backlog(endpoint)) == {made.session_id: (1, 0, 1)}
        await store.append_input(made.session_id, [UserMessage(text="hi")])
        await store.append_input(before.session_id, [UserMessage(text="hi")])
        assert live(await store.webhook_backlog(endpoint)) == {
            made.session_id: (1, 0, 2),
            before.session_id: (1, 0, 2),
        }
        await store.advance_webhook_cursor(endpoint.endpoint_id, made.session_id, 2, 1)
        await store.advance_webhook_cursor(endpoint.endpoint_id, before.session_id, 3, 0)
        assert live(await store.webhook_backlog(endpoint)) == {made.session_id: (2, 1, 2)}
        # A cursor never moves back: a sender that lost its lease may still report.
        await store.advance_webhook_cursor(endpoint.endpoint_id, made.session_id, 2, 0)
        await store.advance_webhook_cursor(endpoint.endpoint_id, made.session_id, 1, 5)
        assert live(await store.webhook_backlog(endpoint)) == {made.session_id: (2, 1, 2)}
        await store.advance_webhook_cursor(endpoint.endpoint_id, made.session_id, 3, 0)
        assert live(await store.webhook_backlog(endpoint)) == {}
        await store.append_input(made.session_id, [SessionStatus(status="running")])
        assert live(await store.webhook_backlog(endpoint)) == {made.session_id: (3, 0, 3)}
        assert len(await store.webhook_backlog(endpoint, limit=1)) == 1

    async def test_a_cursor_survives_a_new_url_but_not_its_endpoint(
        self, store: EventStore
    ) -> None:
        endpoint = await endpoint_of(store)
        made = await store.create_session("acme", CREATED)
        await store.advance_webhook_cursor(endpoint.endpoint_id, made.session_id, 2, 0)
        moved = await store.set_webhook_endpoint(
            "acme", "https://b.example.com/", [], new_secret=SECRET
        )
        assert live(await store.webhook_backlog(moved)) == {}
        await store.delete_webhook_endpoint("acme")
        # A sender still at work for the removed endpoint leaves nothing behind.
        await store.advance_webhook_cursor(endpoint.endpoint_id, made.session_id, 2, 0)
        fresh = await endpoint_of(store)
        await store.append_input(made.session_id, [UserMessage(text="hi")])
        assert live(await store.webhook_backlog(fresh)) == {made.session_id: (1, 0, 2)}

    async def test_a_deleted_session_leaves_its_deletion_to_send(self, store: EventStore) -> None:
        quiet = await store.create_session("globex", CREATED)
        await store.delete_session(quiet.session_id, unless_running=True)  # no endpoint: no row
        endpoint = await endpoint_of(store)
        sent = await store.create_session("acme", CREATED)
        await store.advance_webhook_cursor(endpoint.endpoint_id, sent.session_id, 2, 0)
        unseen = await store.create_session("acme", CREATED)
        for session in (sent, unseen):
            await store.delete_session(session.session_id, unless_running=True)
        backlog = await store.webhook_backlog(endpoint)
        assert live(backlog) == {}
        deleted = {b.session_id: b.deleted_at for b in backlog}
        assert set(deleted) == {sent.session_id, unseen.session_id}
        assert all(at is not None and at >= endpoint.created_at for at in deleted.values())
        await store.forget_webhook_session(endpoint.endpoint_id, sent.session_id)
        assert [b.session_id for b in await store.webhook_backlog(endpoint)] == [unseen.session_id]
        globex = await endpoint_of(store, "globex")
        assert await store.webhook_backlog(globex) == []
