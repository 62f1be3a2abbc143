"""`python -m gateway`: serve the HTTP API until SIGINT/SIGTERM (configured by `KEEL_*`)."""

from __future__ import annotations

import argparse
import logging
import os

import nats
import uvicorn
import uvloop

from gateway._app import create_app
from gateway._idempotency import CRASH_POINTS
from schemas import Crashpoints, NatsLinkLog
from session_store import open_store


async def serve(store_url: str, nats_url: str, host: str, port: int, access_log: bool) -> None:
    store = open_store(store_url)
    await store.migrate()
    link = NatsLinkLog(logging.getLogger("keel.gateway"), "the gateway")
    nc = link.client = await nats.connect(
        nats_url, name="gateway", max_reconnect_attempts=-1, **link.callbacks()
    )
    # A drill names a point where the gateway kills itself (`gateway._idempotency`).
    crash = Crashpoints(os.environ.get("KEEL_CRASH_AT") or None, CRASH_POINTS)
    config = uvicorn.Config(
        create_app(store, nc, crash=crash),
        host=host,
        port=port,
        log_level="info",
        lifespan="off",
        # The C parser: the pure-Python one (h11) took most of the gateway's CPU under load.
        http="httptools",
        # A line per request costs more than serving many of them; /metrics counts them.
        access_log=access_log,
    )
    try:
        # uvicorn handles SIGINT/SIGTERM: it stops taking requests and lets open ones end.
        await uvicorn.Server(config).serve()
    finally:
        await nc.drain()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument(
        "--store-url", default=os.environ.get("KEEL_STORE_URL", "sqlite:///keel.db")
    )
    parser.add_argument(
        "--nats-url", default=os.environ.get("KEEL_NATS_URL", "nats://127.0.0.1:4222")
    )
    parser.add_argument("--host", default=os.environ.get("KEEL_HTTP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("KEEL_HTTP_PORT", "8080")))
    parser.add_argument(
        "--access-log",
        action="store_true",
        default=os.environ.get("KEEL_ACCESS_LOG", "") == "1",
        help="log every request (KEEL_ACCESS_LOG=1)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # uvloop: the event loop in C, for the same reason as httptools.
    uvloop.run(serve(args.store_url, args.nats_url, args.host, args.port, args.access_log))


if __name__ == "__main__":
    main()
