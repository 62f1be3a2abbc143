"""`/metrics` of a process that has no HTTP server of its own (a brain, a hands host), at the
address its settings name (`KEEL_METRICS_ADDR`).

It is prometheus_client's own server, on a daemon thread, not a route on the process's event
loop: a scrape renders the whole registry, which would otherwise run on the loop that drives
sessions and calls, and the loop has no HTTP server to add a route to (a hand-written one
would be a second HTTP parser to keep). The thread only reads: the metrics are thread-safe,
and the gauges computed at scrape time read the size of a dict or set, which is atomic.
"""

from __future__ import annotations

import threading
from typing import Annotated
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from schemas._settings import SettingsError, setting

# The setting of a process that serves its own `/metrics` (a brain, a hands host).
MetricsAddr = Annotated[
    str,
    setting(
        "KEEL_METRICS_ADDR",
        "host:port where the process serves Prometheus /metrics (port 0: a free one); "
        "unset, it serves none",
    ),
]


class MetricsServer:
    def __init__(self, server: WSGIServer, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self._host = host

    @classmethod
    def start(cls, address: str, registry: CollectorRegistry) -> MetricsServer:
        """Serve `registry` at `address` (`host:port`; port 0 picks a free one)."""
        host, port = parse_metrics_addr(address)
        server, thread = start_http_server(port, host, registry)
        return cls(server, thread, host)

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._server.server_port}/metrics"

    def close(self) -> None:
        """Stop serving (blocks up to half a second: run it on a thread from a loop)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def parse_metrics_addr(address: str) -> tuple[str, int]:
    """`host:port` (`[::1]:port` for IPv6) as a host and a port."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise SettingsError(f"KEEL_METRICS_ADDR={address!r} is not valid; expected host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)
