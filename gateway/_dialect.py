"""Which of keel's two dialects a request speaks, and the `request-id` every answer carries.

keel serves its sessions in two shapes over one store: its own (`spec`, seq-addressed log
events, `items`) and Anthropic's Managed Agents API (`agent`, projected events, `data`),
which the official SDKs speak. The SDKs send `anthropic-beta: managed-agents-…` on every
call, and the API's own examples do too, so that header picks the dialect where the two
share a path (`/v1/sessions…`). Such a request is routed to the Managed Agents routes,
which are also served under their own prefix (`MANAGED_PREFIX`) for a client that sends no
header. Paths only Managed Agents has (`/v1/agents`, `/v1/environments`, a session's
`/events/stream`, `/archive`) need no header.
"""

from __future__ import annotations

import re
import secrets
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The Managed Agents routes whose paths keel's own API also has live under this prefix.
MANAGED_PREFIX: Final = "/managed-agents"
_BETA: Final = b"managed-agents-"
_SESSIONS: Final = "/v1/sessions"
# Paths of the session family that only Managed Agents has: no header is needed for them.
_MANAGED_ONLY: Final = re.compile(r"^/v1/sessions/[^/]+/(events/stream|archive)$")


def speaks_managed_agents(scope: Scope) -> bool:
    return any(name == b"anthropic-beta" and _BETA in value for name, value in scope["headers"])


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


class DialectMiddleware:
    """Routes a Managed Agents request of the shared session paths to the Managed Agents
    routes, and stamps every answer with a `request-id` (read by the SDKs as
    `exc.request_id`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(_SESSIONS) and (
            speaks_managed_agents(scope) or _MANAGED_ONLY.match(path)
        ):
            scope = dict(scope, path=MANAGED_PREFIX + path, raw_path=None)
        request_id = new_request_id().encode()

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"request-id", request_id)]
            await send(message)

        await self.app(scope, receive, stamped)
