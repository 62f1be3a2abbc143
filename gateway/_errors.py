"""Every failure the API reports, as one JSON shape: `{"type": "error", "error": {"type",
"message", "code"}}`, the body the Anthropic SDKs parse (`exc.type`, `exc.api_message`).

Store errors are translated here, once; bad input is a 4xx with a readable message, never a
500.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import Match

from schemas import ApiError, ApiErrorDetail
from session_store import (
    Conflict,
    InvalidInput,
    PayloadTooLarge,
    ResourceNotFound,
    SessionBusy,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)

log = logging.getLogger("keel.gateway")

_ENCODER: Final = msgspec.json.Encoder()

_STATUS_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    503: "unavailable",
}


# The Anthropic API's error types (what its SDKs expose as `exc.type`), by status.
_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    412: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


# How long a client should wait before retrying a request the store could not serve.
RETRY_AFTER_S: Final = 1


class ApiProblem(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        retry_after: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """`retry_after` (seconds): the problem passes by itself and a retry may succeed; a
        503 always has one, a 409 only when given (other 409s are final)."""
        super().__init__(message)
        self.status = status
        self.code = code or _STATUS_CODES.get(status, "error")
        self.message = message
        self.details = details
        self.retry_after = RETRY_AFTER_S if status == 503 and retry_after is None else retry_after


def json_response(body: msgspec.Struct, status: int = 200) -> Response:
    return Response(_ENCODER.encode(body), status_code=status, media_type="application/json")


def problem_response(problem: ApiProblem) -> Response:
    body = ApiError(
        error=ApiErrorDetail(
            type=_ERROR_TYPES.get(problem.status, "api_error"),
            message=problem.message,
            code=problem.code,
            details=problem.details,
        )
    )
    response = json_response(body, problem.status)
    if problem.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    # Clients such as the official SDKs retry 409s (and 5xx) unless told otherwise.
    if problem.retry_after is not None:
        response.headers["Retry-After"] = str(problem.retry_after)
        response.headers["x-should-retry"] = "true"
    elif problem.status == 409:
        response.headers["x-should-retry"] = "false"
    return response


def from_store_error(error: StoreError) -> ApiProblem:
    match error:
        case SessionNotFound():
            return ApiProblem(404, "no such session")
        case ResourceNotFound():
            return ApiProblem(404, str(error))
        case VersionConflict():
            return ApiProblem(409, str(error))
        case PayloadTooLarge():
            return ApiProblem(413, str(error))
        case InvalidInput():
            return ApiProblem(422, str(error))
        case SessionBusy(passing=True):
            return ApiProblem(409, str(error), retry_after=RETRY_AFTER_S)
        case Conflict() | SessionBusy():
            return ApiProblem(409, str(error))
        case StoreUnavailable():
            return ApiProblem(503, "the session store is unavailable; try again")
        case _:
            return ApiProblem(503, f"the session store failed: {error}")


def allowed_methods(request: Request) -> str:
    """Every method the request's path takes, for a 405's `Allow` (Starlette names only the
    methods of the first route whose path matches, one of several). Routes of an included
    router are looked at one by one."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return problem_response(exc)

    async def on_store_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StoreError)
        return problem_response(from_store_error(exc))

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return problem_response(ApiProblem(422, where or "invalid request"))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = problem_response(ApiProblem(exc.status_code, str(exc.detail)))
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request)
        return response

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(StoreError, on_store_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
