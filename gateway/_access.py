"""Who is asking, and whether the session is theirs: the `Caller`, `Tenant`, `Session` and
`WorkerSession` dependencies.

A key (`Authorization: Bearer` or `x-api-key`) names its `Caller` (no key or an unknown one:
401). An API key serves its tenant. An environment key serves one self-hosted environment's
worker: that environment's work queue and the sessions made in it (`WorkerSession`),
nothing else (403). Another tenant's session is a 404, as if it did not exist. FastAPI
resolves a caller once per request, however many dependencies ask for it. Routes that take
them are `QueryFirst` routes: a malformed query is a 422 before the key or the session is
looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import msgspec
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


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    # Set for an environment key: the self-hosted environment whose worker it is.
    environment_id: str | None = None


async def caller_of(request: Request, services: Services) -> Caller:
    key = api_key_of(request)
    tenant = await services.store.tenant_for_key(key)
    if tenant is not None:
        return Caller(tenant=tenant)
    scope = await services.store.environment_for_key(key)
    if scope is None:
        raise ApiProblem(401, "unknown API key")
    return Caller(tenant=scope.tenant, environment_id=scope.environment_id)


Callers = Annotated[Caller, Depends(caller_of)]


async def tenant_of(caller: Callers) -> str:
    if caller.environment_id is not None:
        raise ApiProblem(
            403,
            "an environment key serves its environment's work and sessions only; "
            "use an API key for this",
        )
    return caller.tenant


Tenant = Annotated[str, Depends(tenant_of)]


async def session_of(session_id: str, tenant: Tenant, services: Services) -> SessionInfo:
    return await _session(services, session_id, tenant)


Session = Annotated[SessionInfo, Depends(session_of)]


async def worker_session_of(session_id: str, caller: Callers, services: Services) -> SessionInfo:
    """The session, for an API key of its tenant or the key of its environment's worker."""
    return await _session(services, session_id, caller.tenant, caller.environment_id)


WorkerSession = Annotated[SessionInfo, Depends(worker_session_of)]


async def _session(
    services: Services, session_id: str, tenant: str, environment_id: str | None = None
) -> SessionInfo:
    try:
        info = await services.store.get_session(session_id)
    except SessionNotFound:
        info = None
    if (
        info is None
        or info.tenant != tenant
        or (environment_id is not None and info.environment_id != environment_id)
    ):
        raise ApiProblem(404, f"no session {session_id!r}")
    return info


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
