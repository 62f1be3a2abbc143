"""The HTTP API: sessions and their events under `/v1`, for a tenant named by a bearer key.

One router per resource (`_sessions`, `_events`, `_audit`, `_health`), its routes plain
functions that take what they need as FastAPI dependencies: the tenant and the session
(`_access`), the Idempotency-Key of a write (`_idempotency`), and the parts every route
shares (`_services`), made here once per app. Bodies are msgspec Structs (`schemas._api`),
decoded with a size limit (`_bodies`); their JSON Schema is what the served OpenAPI shows.
"""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI
from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry

from gateway import _audit, _events, _health, _sessions, managed
from gateway._dialect import DialectMiddleware
from gateway._errors import install_error_handlers
from gateway._federation import Federation
from gateway._feeds import Feeds
from gateway._idempotency import install_replays
from gateway._metrics import GatewayMetrics, MetricsMiddleware
from gateway._openapi import install_openapi
from gateway._services import GatewayServices
from gateway._settings import WebhookSettings
from gateway._stream import StreamSettings
from gateway._viewer import install_viewer
from gateway._work import Announcer
from gateway._work_leases import WorkSettings
from schemas import Crashpoints
from session_store import EventStore

API_DESCRIPTION: Final = """\
Every `/v1` request carries a tenant's API key: `Authorization: Bearer <key>`. Another
tenant's session is a 404, as if it did not exist.

**Retries.** Every write (POST, DELETE) takes an optional `Idempotency-Key` header (1 to 255
characters): a retry with the same key and the same request gets the first answer, marked
`Idempotent-Replayed: true`, and nothing is done twice, whatever crashed in between (the
answer is recorded in the same transaction as the write). Requests with one key sent at
once are done once, and all get that answer. The same key with another request is a 422.
A 409 is final (`x-should-retry: false`); a 503 says when to try again (`Retry-After`).

**Streams.** `GET /v1/sessions/{session_id}/stream` sends the log as Server-Sent Events, each
with `id: <seq>`; reconnect with `Last-Event-ID: <seq>` (or `?after=`) to get everything
after it, with no gap and no duplicate, from any gateway.

**Errors** are always `{"type": "error", "error": {"type", "message", "code"}}` with a
`request-id` header: `type` is the class the Anthropic SDKs read, `code` keel's finer name.
"""


def create_app(
    store: EventStore,
    nc: NATS,
    *,
    stream: StreamSettings | None = None,
    work: WorkSettings | None = None,
    crash: Crashpoints | None = None,
    tenant_model_endpoints: bool = False,
    webhooks: WebhookSettings | None = None,
    metrics_registry: CollectorRegistry | None = None,
    federation: Federation | None = None,
) -> FastAPI:
    app = FastAPI(
        title="keel",
        version="0.1.0",
        summary="Long-running AI agents on an event-sourced session log.",
        description=API_DESCRIPTION,
    )
    install_error_handlers(app)
    install_replays(app)
    install_openapi(app)
    stream = stream or StreamSettings()
    metrics = GatewayMetrics(store, nc, metrics_registry, federation)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Outermost: the dialect is chosen before routing, and every answer gets its request-id.
    app.add_middleware(DialectMiddleware)
    GatewayServices(
        store=store,
        nc=nc,
        announcer=Announcer(nc),
        feeds=Feeds(store, nc, stream.poll_s),
        stream=stream,
        work=work or WorkSettings(),
        metrics=metrics,
        crash=crash or Crashpoints(),
        tenant_model_endpoints=tenant_model_endpoints,
        webhook_urls=(webhooks or WebhookSettings()).urls(),
    ).install(app)
    for resource in (_health, _sessions, _events, _audit):
        app.include_router(resource.router)
    managed.install(app)
    install_viewer(app)
    return app
