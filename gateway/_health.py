"""Whether the gateway can serve: `/healthz` (the process is up), `/readyz` (the store and
NATS answer) and `/metrics` (Prometheus, `gateway._metrics`)."""

from __future__ import annotations

import nats.errors
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway._errors import ApiProblem
from gateway._services import Services
from session_store import StoreError

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def serve_metrics(services: Services) -> Response:
    return Response(await services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", response_class=Response)
async def healthz() -> Response:
    """The process is up."""
    return Response(b'{"ok":true}', media_type="application/json")


@router.get(
    "/readyz",
    response_class=Response,
    responses={503: {"description": "the store or NATS does not answer"}},
)
async def readyz(services: Services) -> Response:
    """The store and NATS answer: 200, or 503 naming what does not."""
    problems = []
    try:
        await services.store.list_sessions("readyz", limit=1)
    except StoreError as exc:
        problems.append(f"store: {exc}")
    if not services.nc.is_connected:
        problems.append("nats: not connected")
    else:
        try:
            await services.nc.flush(timeout=2)
        except (nats.errors.Error, TimeoutError) as exc:
            problems.append(f"nats: {exc!r}")
    if problems:
        raise ApiProblem(503, "; ".join(problems))
    return Response(b'{"ok":true}', media_type="application/json")
