"""What the Managed Agents routes share: JSON answers, pages, refusals, resource views."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final

import msgspec
from fastapi import Depends, Query, Response

from gateway._access import Session, WorkerSession
from gateway._errors import ApiProblem
from gateway.managed._projection import rfc3339
from session_store import Resource, Resources, SessionInfo

_ENCODER: Final = msgspec.json.Encoder()
_BODY: Final = msgspec.json.Decoder(dict[str, Any])
# What a list answers at most at once, and by default.
MAX_LIMIT: Final = 1000
# An RFC 3339 time as the SDK sends one (a naive datetime's has no offset: UTC).
_RFC3339: Final = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


def time_query(alias: str) -> Any:
    """A `created_at[...]` filter: an RFC 3339 time, read by `instant`."""
    return Query(alias=alias, max_length=64, json_schema_extra={"format": "date-time"})


def instant(value: str | None, field: str) -> float | None:
    """An RFC 3339 time as unix seconds; a 422 naming the field for anything else."""
    if value is None:
        return None
    match = _RFC3339.fullmatch(value)
    try:
        if match is None:
            raise ValueError(value)
        date, minutes, seconds, fraction, zone = match.groups()
        leap = seconds == "60"  # 23:59:60 is the second after 23:59:59
        zone = "+00:00" if zone in (None, "Z", "z") else zone
        parsed = dt.datetime.fromisoformat(
            f"{date}T{minutes}:{'59' if leap else seconds}{(fraction or '')[:7]}{zone}"
        )
    except ValueError:
        raise ApiProblem(422, f"{field}: not an RFC 3339 time: {value!r}") from None
    return parsed.timestamp() + leap


def _made_from_agent(session: SessionInfo) -> SessionInfo:
    """A session made from an agent: one made with keel's own API has no agent or
    environment to show, and is read there."""
    if session.agent_id is None:
        raise ApiProblem(
            404,
            f"no Managed Agents session {session.session_id!r}: it was made with keel's own "
            f"API; read it there, at /v1/sessions/{session.session_id} without the "
            "anthropic-beta header",
        )
    return session


async def _managed_session(session: Session) -> SessionInfo:
    return _made_from_agent(session)


async def _managed_worker_session(session: WorkerSession) -> SessionInfo:
    return _made_from_agent(session)


# The session of the path, made from an agent and the tenant's (else a 404); the second
# also for the key of its environment's self-hosted worker.
ManagedSession = Annotated[SessionInfo, Depends(_managed_session)]
ManagedWorkerSession = Annotated[SessionInfo, Depends(_managed_worker_session)]


def answer(body: object, status: int = 200) -> Response:
    return Response(_ENCODER.encode(body), status_code=status, media_type="application/json")


def page(data: Sequence[Any], next_page: str | None) -> Response:
    return answer({"data": list(data), "next_page": next_page, "prev_page": None})


def refuse(field: str, why: str) -> ApiProblem:
    """A field keel does not serve (yet): a 400 naming it, never silently ignored."""
    return ApiProblem(400, f"{field}: {why}", "unsupported")


def resource_view(resource: Resource, type_: str) -> dict[str, Any]:
    """A stored version as the API shows it: its body, and what the store keeps beside it."""
    return {
        "id": resource.resource_id,
        "type": type_,
        **_BODY.decode(resource.body),
        "created_at": rfc3339(resource.created_at),
        "updated_at": rfc3339(resource.updated_at),
        "archived_at": None if resource.archived_at is None else rfc3339(resource.archived_at),
    }


def decode_stored(body: str) -> dict[str, Any]:
    return _BODY.decode(body)


def stored(body: dict[str, Any]) -> str:
    return _ENCODER.encode(body).decode()


def patched(current: dict[str, str], patch: dict[str, str | None] | None) -> dict[str, str]:
    """Metadata after a patch: a key sent as null is removed, others set."""
    if patch is None:
        return current
    merged = {**current, **{k: v for k, v in patch.items() if v is not None}}
    for key in [k for k, v in patch.items() if v is None]:
        merged.pop(key, None)
    if len(merged) > 16:
        raise ApiProblem(400, "metadata: at most 16 pairs")
    return merged


class ResourceQuery:
    """The query of a resource list (agents, environments), as a route dependency."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
        page: Annotated[str | None, Query(max_length=64)] = None,
        include_archived: bool = False,
        created_gte: Annotated[str | None, time_query("created_at[gte]")] = None,
        created_lte: Annotated[str | None, time_query("created_at[lte]")] = None,
    ) -> None:
        self.limit = limit
        self.page = page
        self.include_archived = include_archived
        self.created_gte = instant(created_gte, "created_at[gte]")
        self.created_lte = instant(created_lte, "created_at[lte]")

    async def answer(
        self,
        store: Resources,
        tenant: str,
        kind: str,
        view: Callable[[Resource], dict[str, Any]],
    ) -> Response:
        after, before = time_filter(None, self.created_gte, None, self.created_lte)
        found = await store.list_resources(
            tenant,
            kind,
            limit=self.limit,
            cursor=self.page,
            include_archived=self.include_archived,
            created_after=after,
            created_before=before,
        )
        return page([view(r) for r in found.items], found.next_cursor)


def time_filter(
    gt: float | None, gte: float | None, lt: float | None, lte: float | None
) -> tuple[float | None, float | None]:
    """`created_at[gt|gte|lt|lte]` as the store's [after, before) bounds."""
    after = gte
    if gt is not None:
        after = max(after or gt, _next_up(gt))
    before = lt
    if lte is not None:
        before = min(before if before is not None else _next_up(lte), _next_up(lte))
    return after, before


def _next_up(value: float) -> float:
    return math.nextafter(value, math.inf)
