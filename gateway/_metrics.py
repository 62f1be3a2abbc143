"""Prometheus metrics of the gateway, served at `/metrics` (`gateway._health`).

Each app has its own registry (tests run several apps in one process), which the gateway's
store records its own metrics on too (`session_store._metrics`) when `python -m gateway`
opens it. Requests are counted by route template, not by URL, so session ids never become
label values. Under `keel up` the gateway serves its children's series too
(`gateway._federation`).

`MetricsMiddleware` is plain ASGI: it watches the messages the app sends and passes each on
at once, so a response (an SSE stream above all) is never wrapped, buffered or moved to
another task. A request counts when its response ends, with the status it started with: a
stream counts once, when it closes; latency is to the response's start.
"""

from __future__ import annotations

import functools
import time

from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway._federation import Federation
from session_store import Store, StoreHealth, StoreOperation


class GatewayMetrics:
    def __init__(
        self,
        store: Store,
        nc: NATS,
        registry: CollectorRegistry | None = None,
        federation: Federation | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.federation = federation
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

    async def render(self) -> bytes:
        """What `/metrics` serves: this registry, with the federated processes' if any."""
        if self.federation is None:
            return generate_latest(self.registry)
        return await self.federation.render(self.registry)


def _up(health: StoreHealth, kind: StoreOperation) -> float:
    return float(health.up(kind))


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # What an exception that escapes before the response starts becomes.
        status = 500
        streaming = False

        async def watched(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.latency.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - started
                )
                if _is_event_stream(message):
                    streaming = True
                    self.metrics.streams.inc()
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            if streaming:
                self.metrics.streams.dec()
            self.metrics.requests.labels(scope["method"], _route(scope), str(status)).inc()


def _route(scope: Scope) -> str:
    """The template of the route that took the request (the router notes it in the scope
    before the route runs), as the OpenAPI document names it: without its parameters'
    convertors."""
    path: str = getattr(scope.get("route"), "path_format", "unmatched")
    return path


def _is_event_stream(start: Message) -> bool:
    return any(
        name == b"content-type" and value.startswith(b"text/event-stream")
        for name, value in start["headers"]
    )
