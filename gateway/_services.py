"""What the routes share: one set per app, made by `create_app`, handed to each route as a
dependency (`Services`), so the routers are plain module-level objects with no closures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from nats.aio.client import Client as NATS

from gateway._feeds import Feeds
from gateway._metrics import GatewayMetrics
from gateway._stream import StreamSettings
from gateway._webhook_urls import WebhookUrls
from gateway._work import Announcer
from gateway._work_leases import WorkSettings
from schemas import Crashpoints
from session_store import EventStore


@dataclass(frozen=True, kw_only=True)
class GatewayServices:
    store: EventStore
    nc: NATS
    announcer: Announcer
    # One reader per live session, shared by its streams.
    feeds: Feeds
    stream: StreamSettings
    work: WorkSettings
    metrics: GatewayMetrics
    # Where a drill has the gateway kill itself (`gateway._idempotency`).
    crash: Crashpoints
    # Where the operator lets tenants point webhooks.
    webhook_urls: WebhookUrls
    # Whether a session's spec may name its model's server and key variable
    # (`KEEL_TENANT_MODEL_ENDPOINTS`).
    tenant_model_endpoints: bool = False

    def install(self, app: FastAPI) -> None:
        app.state.services = self


async def _services(request: Request) -> GatewayServices:
    services: GatewayServices = request.app.state.services
    return services


Services = Annotated[GatewayServices, Depends(_services)]
