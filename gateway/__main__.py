"""`python -m gateway`: serve the HTTP API until SIGINT/SIGTERM (configured by `KEEL_*`)."""

from __future__ import annotations

import argparse
import logging

import uvicorn
import uvloop
from prometheus_client import CollectorRegistry

from gateway._app import create_app
from gateway._idempotency import CRASH_POINTS
from gateway._settings import GatewaySettings
from gateway._work_leases import WorkSettings
from gateway.managed import WebhookDeliverer
from schemas import (
    Crashpoints,
    NatsLinkLog,
    SettingsError,
    configure_logging,
    connect_nats,
    settings_from_env,
)
from session_store import open_store


async def serve(settings: GatewaySettings) -> None:
    # One registry for the gateway's metrics and its store's.
    registry = CollectorRegistry()
    store = open_store(settings.store_url, registry=registry)
    await store.migrate()
    link = NatsLinkLog(logging.getLogger("keel.gateway"), "the gateway")
    nc = await connect_nats(settings.nats_url, "gateway", link)
    app = create_app(
        store,
        nc,
        work=WorkSettings(lease_s=settings.work_lease_s),
        crash=Crashpoints(settings.crash_at, CRASH_POINTS),
        tenant_model_endpoints=settings.tenant_model_endpoints,
        webhooks=settings.webhooks,
        metrics_registry=registry,
        federation=settings.federation(),
    )
    # Webhooks are sent by every gateway whose operator allows webhook URLs; the store's
    # leases keep two from sending to one endpoint at once.
    deliverer = (
        WebhookDeliverer(store, settings.webhooks) if settings.webhooks.urls().enabled else None
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        # uvicorn's loggers keep their records for keel's handler (configure_logging).
        log_config=None,
        lifespan="off",
        # The C parser: the pure-Python one (h11) took most of the gateway's CPU under load.
        http="httptools",
        # A line per request costs more than serving many of them; /metrics counts them.
        access_log=settings.access_log,
    )
    try:
        if deliverer is not None:
            await deliverer.start()
        # uvicorn handles SIGINT/SIGTERM: it stops taking requests and lets open ones end.
        await uvicorn.Server(config).serve()
    finally:
        if deliverer is not None:
            await deliverer.close()
        await nc.drain()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--store-url", help="the session store (default: KEEL_STORE_URL)")
    parser.add_argument("--nats-url", help="the NATS server (default: KEEL_NATS_URL)")
    parser.add_argument("--host", help="the address to listen on (default: KEEL_HTTP_HOST)")
    parser.add_argument("--port", type=int, help="the port to listen on (default: KEEL_HTTP_PORT)")
    parser.add_argument("--access-log", action="store_true", default=None, help="log every request")
    args = parser.parse_args()
    try:
        settings = settings_from_env(GatewaySettings, overrides=vars(args))
    except SettingsError as exc:
        parser.error(str(exc))
    configure_logging("gateway", f"{settings.host}:{settings.port}", settings.log)
    # uvloop: the event loop in C, for the same reason as httptools.
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
