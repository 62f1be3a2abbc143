"""The OTLP side of the trace tests: Arize Phoenix (a receiver users run) and a tap in
front of it that keeps every span it passes on, as the bytes that were sent."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.nats_server import free_port

PHOENIX_START_S = 120.0


def phoenix_command() -> str:
    """Phoenix's `phoenix` command: KEEL_PHOENIX, else the venv `.ci/run` makes, else
    PATH's. Missing, the test skips, or fails under KEEL_REQUIRE_OTLP_RECEIVER=1 (CI),
    never passes without a receiver."""
    cache = Path(os.environ.get("KEEL_CACHE_DIR") or Path.home() / ".cache" / "keel")
    cached = cache / "phoenix" / "bin" / "phoenix"
    found = (
        os.environ.get("KEEL_PHOENIX")
        or (str(cached) if cached.exists() else None)
        or shutil.which("phoenix")
    )
    if found and Path(found).exists():
        return found
    message = (
        f"Arize Phoenix is not installed: `python -m venv {cache}/phoenix && "
        f"{cache}/phoenix/bin/pip install 'arize-phoenix>=20,<21'` (as .ci/run does), "
        "or set KEEL_PHOENIX to its `phoenix` command"
    )
    if os.environ.get("KEEL_REQUIRE_OTLP_RECEIVER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Phoenix:
    """A running Phoenix: its API (and OTLP over HTTP at /v1/traces), and OTLP over gRPC."""

    url: str
    grpc_endpoint: str


@contextmanager
def running_phoenix(working_dir: Path) -> Iterator[Phoenix]:
    """A Phoenix server of its own (loopback only, no telemetry, nothing fetched from
    outside)."""
    command = phoenix_command()
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(working_dir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    }
    log = (working_dir / "phoenix.log").open("wb")
    server = subprocess.Popen([command, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PHOENIX_START_S
        while not _answers(f"{url}/healthz"):
            assert server.poll() is None, (working_dir / "phoenix.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Phoenix did not start"
            time.sleep(0.5)
        yield Phoenix(url=url, grpc_endpoint=f"http://127.0.0.1:{grpc_port}")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class OtlpTap:
    """An OTLP/HTTP endpoint that keeps each span it is sent (serialized alone, so two
    sends of the same span compare equal byte for byte) under the current `phase`, and
    passes the request on to `forward_to`."""

    def __init__(self, forward_to: str) -> None:
        self.forward_to = forward_to
        self.phase = "live"
        self.spans: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpTap:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kept(self, phase: str) -> list[bytes]:
        with self._lock:
            return list(self.spans.get(phase, []))

    def _keep(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = [
            span.SerializeToString(deterministic=True)
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.spans.setdefault(self.phase, []).extend(spans)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tap = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                tap._keep(body)
                forwarded = urllib.request.Request(
                    tap.forward_to,
                    data=body,
                    headers={"Content-Type": self.headers["Content-Type"]},
                    method="POST",
                )
                try:
                    with urllib.request.urlopen(forwarded, timeout=30) as response:
                        status, answer = response.status, response.read()
                except urllib.error.HTTPError as error:
                    status, answer = error.code, error.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler
