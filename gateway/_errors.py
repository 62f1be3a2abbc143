"""Every failure the API reports, as one JSON shape: `{"error": {"code", "message"}}`.

Store errors are translated here, once; bad input is a 4xx with a readable message, never a
500.
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from schemas import ApiError, ApiErrorDetail
from session_store import (
    Conflict,
    InvalidInput,
    PayloadTooLarge,
    SessionBusy,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger("keel.gateway")

_ENCODER: Final = msgspec.json.Encoder()

_STATUS_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    503: "unavailable",
}


class ApiProblem(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _STATUS_CODES.get(status, "error")
        self.message = message


def json_response(body: msgspec.Struct, status: int = 200) -> Response:
    return Response(_ENCODER.encode(body), status_code=status, media_type="application/json")


def problem_response(problem: ApiProblem) -> Response:
    body = ApiError(error=ApiErrorDetail(code=problem.code, message=problem.message))
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    response = json_response(body, problem.status)
    if headers:
        response.headers.update(headers)
    return response


def from_store_error(error: StoreError) -> ApiProblem:
    match error:
        case SessionNotFound():
            return ApiProblem(404, "no such session")
        case PayloadTooLarge():
            return ApiProblem(413, str(error))
        case InvalidInput():
            return ApiProblem(422, str(error))
        case Conflict() | SessionBusy():
            return ApiProblem(409, str(error))
        case StoreUnavailable():
            return ApiProblem(503, "the session store is unavailable; try again")
        case _:
            return ApiProblem(503, f"the session store failed: {error}")


def allowed_methods(request: Request) -> str:
    """Every method the request's path takes, for a 405's `Allow` (Starlette names only the
    methods of the first route whose path matches, one of several)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
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
