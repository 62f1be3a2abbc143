"""Who is asking, and whether the session is theirs: the `Tenant` and `Session` dependencies.

An API key (`Authorization: Bearer` or `x-api-key`) names a tenant (no key or an unknown
one: 401); another tenant's session is a 404, as if it did not exist. FastAPI resolves a
tenant once per request, however many dependencies ask for it. Routes that take them are
`QueryFirst` routes: a malformed query is a 422 before the key or the session is looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from gateway._errors import ApiProblem
from gateway._services import Services
from session_store import SessionInfo, SessionNotFound


def api_key_of(request: Request) -> str:
    """The key of `Authorization: Bearer <key>` (what the Anthropic SDKs send) or of
    `x-api-key: <key>` (what the Anthropic API's own examples send)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    raise ApiProblem(
        401, "send your API key as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
    )


async def tenant_of(request: Request, services: Services) -> str:
    tenant = await services.store.tenant_for_key(api_key_of(request))
    if tenant is None:
        raise ApiProblem(401, "unknown API key")
    return tenant


Tenant = Annotated[str, Depends(tenant_of)]


async def session_of(session_id: str, tenant: Tenant, services: Services) -> SessionInfo:
    try:
        info = await services.store.get_session(session_id)
    except SessionNotFound:
        info = None
    if info is None or info.tenant != tenant:
        raise ApiProblem(404, f"no session {session_id!r}")
    return info


Session = Annotated[SessionInfo, Depends(session_of)]


class QueryFirst(APIRoute):
    """A route that validates its query before its dependencies run.

    FastAPI calls a route's dependencies first and validates the route's own query after, so
    a malformed query from a client without a key (or for another tenant's session) would be
    a 401 (or a 404) where the API has always answered 422, whatever else is wrong."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        query = self.dependant.query_params
        if not query:
            return handle

        async def checked(request: Request) -> Response:
            _, errors = request_params_to_args(query, request.query_params)
            if errors:
                raise RequestValidationError(errors)
            return await handle(request)

        return checked
