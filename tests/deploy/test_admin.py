"""`keel up`'s admin socket: only its user may connect, and a bad request is an answer."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from deploy.admin import AdminServer, admin_call, admin_socket_path
from schemas import AdminReply, AdminRequest, AdminRestart, AdminStatus


def answer(request: AdminRequest) -> AdminReply:
    if isinstance(request, AdminRestart):
        raise RuntimeError(f"cannot restart {request.child}")
    return AdminReply(ok=True, http_url="http://127.0.0.1:8080")


def test_the_socket_is_its_users_alone_and_answers_each_request(tmp_path: Path) -> None:
    server = AdminServer(admin_socket_path(tmp_path), answer)
    server.start()
    try:
        mode = admin_socket_path(tmp_path).stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        reply = admin_call(admin_socket_path(tmp_path), AdminStatus())
        assert reply.http_url == "http://127.0.0.1:8080"
        # A request that fails is refused with its reason; the socket goes on answering.
        with pytest.raises(RuntimeError, match="cannot restart nats"):
            admin_call(admin_socket_path(tmp_path), AdminRestart(child="nats"))
        assert admin_call(admin_socket_path(tmp_path), AdminStatus()).ok
    finally:
        server.close()
    assert not admin_socket_path(tmp_path).exists()
