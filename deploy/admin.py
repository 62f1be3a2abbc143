"""`keel up`'s admin socket: a Unix socket in the data directory, mode 0600.

Local only, by construction: a Unix socket is not reachable from the network, and its mode
lets in only the user who runs `keel up` (who could signal its processes anyway), so there
is no token to leak or rotate. One JSON request per connection, one JSON reply.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from schemas import AdminReply, AdminRequest

_DECODER: Final = msgspec.json.Decoder(AdminRequest)
_REPLY: Final = msgspec.json.Decoder(AdminReply)
_MAX_REQUEST: Final = 64 * 1024


def admin_socket_path(data_dir: Path) -> Path:
    return data_dir / "admin.sock"


class AdminServer:
    """Answers requests on its own thread, one connection at a time: a drill's faults are
    serial, and one at a time is what keeps a restart from racing another."""

    def __init__(self, path: Path, handle: Callable[[AdminRequest], AdminReply]) -> None:
        self.path = path
        self.handle = handle
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.thread = threading.Thread(target=self._serve, name="keel-admin", daemon=True)

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a `keel up` that was killed
        old_umask = os.umask(0o177)  # created 0600: no moment when others may connect
        try:
            self.listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        self.listener.listen(4)
        self.thread.start()

    def close(self) -> None:
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed
            with connection:
                try:
                    reply = self._answer(_read_line(connection))
                except OSError:
                    continue
                with contextlib.suppress(OSError):
                    connection.sendall(msgspec.json.encode(reply) + b"\n")

    def _answer(self, line: bytes) -> AdminReply:
        try:
            request = _DECODER.decode(line)
        except msgspec.DecodeError as exc:
            return AdminReply(ok=False, error=f"bad request: {exc}")
        try:
            return self.handle(request)
        except Exception as exc:  # one bad request never stops the socket
            return AdminReply(ok=False, error=repr(exc))


def _read_line(connection: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < _MAX_REQUEST:
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def admin_call(path: Path, request: AdminRequest, timeout_s: float = 60.0) -> AdminReply:
    """Ask the `keel up` whose socket is at `path`; raise on a refused request."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout_s)
        connection.connect(str(path))
        connection.sendall(msgspec.json.encode(request) + b"\n")
        reply = _REPLY.decode(_read_line(connection))
    if not reply.ok:
        raise RuntimeError(f"keel up refused {request}: {reply.error}")
    return reply
