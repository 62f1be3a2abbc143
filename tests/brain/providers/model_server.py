"""A local HTTP server that answers like a model API, for the provider tests (no internet).

A real socket on 127.0.0.1 and a free port, served from a thread by the standard library. A
test queues the replies it wants (a JSON body, or SSE chunks written and flushed one by one,
optionally after a delay) and reads back every request the server received: path, headers
and JSON body. With no reply queued the server answers 500.

The wire formats follow the providers' documentation: Anthropic's Messages streaming events
(`event: <type>` / `data: <json>`) and OpenAI's `data: <chat.completion.chunk>` lines ending
with `data: [DONE]`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: object = None  # JSON, sent whole
    chunks: tuple[bytes, ...] = ()  # an event stream, flushed chunk by chunk
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any]


class ModelServer:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = False  # close() joins every handler
        self._http.model_server = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> ModelServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes handlers that are sleeping out a delay
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.received.append(received)
            if self._replies:
                return self._replies.popleft()
        return Reply(status=500, body={"error": {"message": "no reply queued"}})


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        model_server: ModelServer = self.server.model_server  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = model_server._next(Received(path=self.path, headers=headers, body=body))
        if reply.delay_s and model_server._closing.wait(reply.delay_s):
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(reply)  # unless the client gave up (a timeout test)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunks:
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.end_headers()  # no length: the body ends when the connection closes
            for chunk in reply.chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
            return
        data = json.dumps(reply.body).encode() if reply.body is not None else b""
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


def anthropic_events(*events: dict[str, Any]) -> tuple[bytes, ...]:
    """Server-sent events as the Messages API streams them: named, with the type repeated in
    the data."""
    return tuple(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def openai_chunks(*chunks: dict[str, Any], done: bool = True) -> tuple[bytes, ...]:
    """Chat completion chunks as data-only server-sent events, then `[DONE]`."""
    lines = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
    return (*lines, b"data: [DONE]\n\n") if done else tuple(lines)
