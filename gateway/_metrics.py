"""Prometheus metrics of the gateway, served at `/metrics`.

Each app has its own registry (tests run several apps in one process). Requests are counted
by route template, not by URL, so session ids never become label values.
"""

from __future__ import annotations

import functools
import time

from fastapi import FastAPI, Request, Response
from nats.aio.client import Client as NATS
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from session_store import Store, StoreHealth, StoreOperation


class GatewayMetrics:
    def __init__(self, store: Store, nc: NATS) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "keel_http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "keel_http_request_seconds",
            "Time to the response's start, by method and route.",
            ["method", "route"],
            registry=self.registry,
        )
        self.streams = Gauge(
            "keel_sse_streams", "Server-Sent Event streams open now.", registry=self.registry
        )
        # What an operator watches in an outage: 1 while the part works, 0 while it is away.
        store_up = Gauge(
            "keel_store_up",
            "1 while the store's reads (or writes) work, as the gateway's requests find out.",
            ["kind"],
            registry=self.registry,
        )
        for kind in ("read", "write"):
            store_up.labels(kind).set_function(functools.partial(_up, store.health, kind))
        Gauge(
            "keel_nats_connected",
            "1 while the gateway is connected to NATS.",
            registry=self.registry,
        ).set_function(lambda: float(nc.is_connected))


def _up(health: StoreHealth, kind: StoreOperation) -> float:
    return float(health.up(kind))


def install_metrics(app: FastAPI, store: Store, nc: NATS) -> GatewayMetrics:
    metrics = GatewayMetrics(store, nc)

    async def measure(request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.requests.labels(request.method, template, str(response.status_code)).inc()
        metrics.latency.labels(request.method, template).observe(time.perf_counter() - started)
        return response

    app.add_middleware(BaseHTTPMiddleware, dispatch=measure)

    @app.get("/metrics", include_in_schema=False)
    async def serve_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
