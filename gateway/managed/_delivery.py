"""Webhooks sent from the log, at least once, whatever process dies.

Every gateway that allows webhook URLs runs a `WebhookDeliverer`. It leases endpoints from
the store (`claim_webhook_endpoints`, renewed every poll), so one gateway at a time sends
to an endpoint, and runs one task per endpoint it holds: that task asks the store which of
the tenant's sessions have events past the endpoint's cursor, folds their logs into webhook
events (`_webhook_events`), sends each in log order, and moves the cursor past it once the
receiver has taken it. The cursor is the store's, so a gateway killed mid-send is followed,
once its lease lapses, by one that resumes there; the webhook it was sending is sent again,
under the same id.

A webhook the receiver does not take is tried again, with a backoff that doubles up to
`retry_max_s`, until it is taken; the session's later webhooks wait behind it (so a
receiver sees each session's in order). Each endpoint has its own task, so a receiver that
fails or hangs delays only its own tenant's webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any, Final

from gateway._settings import WebhookSettings
from gateway._webhook_urls import WebhookUrls
from gateway.managed._webhook_events import WebhookEvents, deleted_event
from gateway.managed._webhook_sender import DeliveryFailed, WebhookSender
from schemas import BackgroundTasks, Backoff, new_id, retrying
from session_store import (
    SessionNotFound,
    StoreError,
    WebhookBacklog,
    WebhookDeliveries,
    WebhookEndpoint,
)

log = logging.getLogger("keel.gateway")

# Sessions asked for at once, log events read at once, and folded logs kept per endpoint
# (a session's fold is kept between its turns, so a busy log is not read from the start
# every time it grows).
_BACKLOG: Final = 100
_READ_BATCH: Final = 500
_KEPT_FOLDS: Final = 1000


class WebhookDeliverer:
    def __init__(
        self,
        store: WebhookDeliveries,
        settings: WebhookSettings,
        *,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.urls: WebhookUrls = settings.urls()
        # Unique per process: a gateway restarted waits for its old leases like any other.
        self.owner = owner or new_id("gateway")
        self.sender = WebhookSender(settings.timeout_s)
        self.backoff = Backoff(
            attempts=None,
            first_s=settings.retry_first_s,
            max_s=settings.retry_max_s,
            factor=2.0,
            jitter_s=settings.retry_first_s / 2,
        )
        self._endpoints: dict[str, tuple[WebhookEndpoint, asyncio.Task[None]]] = {}
        self._tasks = BackgroundTasks(log, "sending webhooks")
        self._leasing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._leasing = self._tasks.spawn(self._lease())

    async def close(self) -> None:
        """Stop sending, and let go of the endpoints so another gateway takes them at once."""
        await self._tasks.cancel()
        self._endpoints.clear()
        with contextlib.suppress(StoreError):
            await self.store.release_webhook_endpoints(self.owner)
        await self.sender.aclose()

    async def _lease(self) -> None:
        loop = asyncio.get_running_loop()
        held_until = loop.time()
        while True:
            try:
                held = await self.store.claim_webhook_endpoints(self.owner, self.settings.lease_s)
            except StoreError as exc:
                log.warning("webhooks: could not renew the endpoints' leases: %s", exc)
                if loop.time() > held_until:
                    # Another gateway may hold them by now: stop, rather than send alongside.
                    self._follow([])
            else:
                held_until = loop.time() + self.settings.lease_s
                self._follow(held)
            await asyncio.sleep(self.settings.poll_s)

    def _follow(self, held: list[WebhookEndpoint]) -> None:
        """One task per endpoint held, on its current settings."""
        current = {endpoint.tenant: endpoint for endpoint in held}
        for tenant, (endpoint, task) in list(self._endpoints.items()):
            if current.get(tenant) != endpoint or task.done():
                task.cancel()
                del self._endpoints[tenant]
        for tenant, endpoint in current.items():
            if tenant not in self._endpoints:
                task = self._tasks.spawn(EndpointDelivery(self, endpoint).run())
                self._endpoints[tenant] = (endpoint, task)

    async def send(self, endpoint: WebhookEndpoint, event: dict[str, Any]) -> None:
        """Send `event` until the receiver takes it."""

        async def attempt() -> None:
            if not self.urls.permits(endpoint.url):
                raise DeliveryFailed("the operator no longer allows webhooks to this URL")
            await self.sender.send(endpoint.url, endpoint.secret, event)

        await retrying(
            self.backoff,
            attempt,
            lambda exc: isinstance(exc, DeliveryFailed),
            what=f"webhook {event['id']} of {endpoint.tenant} to {endpoint.url}",
        )


class EndpointDelivery:
    """What one endpoint is sent, while this gateway holds it."""

    def __init__(self, deliverer: WebhookDeliverer, endpoint: WebhookEndpoint) -> None:
        self.deliverer = deliverer
        self.store = deliverer.store
        self.endpoint = endpoint
        self.folds: OrderedDict[str, WebhookEvents] = OrderedDict()

    async def run(self) -> None:
        while True:
            try:
                backlog = await self.store.webhook_backlog(self.endpoint, limit=_BACKLOG)
                for session in backlog:
                    await self._catch_up(session)
            except StoreError as exc:
                backlog = []
                log.warning("webhooks of %s: %s", self.endpoint.tenant, exc)
            if len(backlog) < _BACKLOG:
                await asyncio.sleep(self.deliverer.settings.poll_s)

    async def _catch_up(self, session: WebhookBacklog) -> None:
        endpoint, sid = self.endpoint, session.session_id
        if session.deleted_at is not None:
            deleted = deleted_event(sid, endpoint.tenant, session.deleted_at)
            if self._wants(deleted):
                await self.deliverer.send(endpoint, deleted)
            await self.store.forget_webhook_session(endpoint.endpoint_id, sid)
            self.folds.pop(sid, None)
            return
        fold = self._fold_of(session)
        cursor = (session.next_seq, session.next_part)
        while True:
            try:
                records = await self.store.read(sid, after_seq=fold.seq, limit=_READ_BATCH)
            except SessionNotFound:
                return  # deleted meanwhile: its tombstone comes with the next backlog
            for record in records:
                events = fold.of(record)
                if record.seq < session.next_seq:
                    continue  # sent before this fold was made
                start = session.next_part if record.seq == session.next_seq else 0
                for part in range(start, len(events)):
                    if record.at >= endpoint.created_at and self._wants(events[part]):
                        await self.deliverer.send(endpoint, events[part])
                        cursor = _after(record.seq, part, len(events))
                        await self.store.advance_webhook_cursor(endpoint.endpoint_id, sid, *cursor)
            if records and cursor < (records[-1].seq + 1, 0):
                # Nothing more to send up to here: the cursor passes the rest at once.
                cursor = (records[-1].seq + 1, 0)
                await self.store.advance_webhook_cursor(endpoint.endpoint_id, sid, *cursor)
            if len(records) < _READ_BATCH:
                return

    def _fold_of(self, session: WebhookBacklog) -> WebhookEvents:
        """The session's fold, at most up to the event before the cursor; a new one when
        the kept one went past it (or none is kept)."""
        fold = self.folds.pop(session.session_id, None)
        if fold is None or fold.seq >= session.next_seq:
            fold = WebhookEvents(session.session_id, self.endpoint.tenant)
        self.folds[session.session_id] = fold
        if len(self.folds) > _KEPT_FOLDS:
            self.folds.popitem(last=False)
        return fold

    def _wants(self, event: dict[str, Any]) -> bool:
        types = self.endpoint.event_types
        return not types or event["data"]["type"] in types


def _after(seq: int, part: int, parts: int) -> tuple[int, int]:
    """The cursor past part `part` of the `parts` webhook events of log event `seq`."""
    return (seq, part + 1) if part + 1 < parts else (seq + 1, 0)
