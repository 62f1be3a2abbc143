"""`python -m gateway`: serve the HTTP API until SIGINT/SIGTERM (configured by `KEEL_*`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

import nats
import uvicorn

from gateway._app import create_app
from session_store import open_store


async def serve(store_url: str, nats_url: str, host: str, port: int) -> None:
    store = open_store(store_url)
    await store.migrate()
    nc = await nats.connect(nats_url, name="gateway", max_reconnect_attempts=-1)
    config = uvicorn.Config(
        create_app(store, nc), host=host, port=port, log_level="info", lifespan="off"
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.store_url, args.nats_url, args.host, args.port))


if __name__ == "__main__":
    main()
