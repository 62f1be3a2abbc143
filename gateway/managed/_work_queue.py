"""`/v1/environments/{id}/work`: the protocol a self-hosted environment's worker speaks
(the SDK's `environments.work` and its `EnvironmentWorker`).

A work item is a session of the environment that waits on its worker: the store derives the
queue from the sessions' rows at each poll (`session_store._work`), so no gateway holds any
of it and any gateway can serve any call. The worker polls (JSON `null` when there is
nothing), acknowledges, heartbeats (each naming the previous one: a 412 says another worker
may hold the item), runs the session's tool calls over the session routes and posts their
results, and stops the item. A worker that dies loses its item when its lease lapses, and
the next poll hands it to another.

Keys: polls, acks, heartbeats and lists take the environment's key (made with
`POST /v1/environments/{id}/keys`, keel's extension: the SDK has no call for it); retrieve
and update take an API key, as the API documents; stop and stats take either.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.convertors import StringConvertor, register_url_convertor

from gateway._access import Callers, QueryFirst
from gateway._bodies import decode_body, decode_optional_body
from gateway._errors import ApiProblem
from gateway._services import Services
from gateway.managed._common import MAX_LIMIT, answer, decode_stored, page
from gateway.managed._environments import KIND as ENVIRONMENT
from gateway.managed._projection import rfc3339
from gateway.managed._shapes import WorkStopParams, WorkUpdateParams
from session_store import RECLAIM_AFTER_S, HeartbeatMismatch, WorkItem, WorkLease

# A work item's id, as the store makes them (`new_id("work")`).
_WORK_ID: Final = "work_[^/]+"


class _WorkId(StringConvertor):
    """A work item's id, `work_...`: so `/work/poll` and `/work/stats` name no item, and a
    POST there is a 405, not an update of an item called `poll`."""

    regex = _WORK_ID


register_url_convertor("work_id", _WorkId())

router = APIRouter(route_class=QueryFirst, tags=["managed agents"])

_PATH: Final = "/v1/environments/{environment_id}/work"
_ITEM: Final = f"{_PATH}/{{work_id:work_id}}"
# What the document says of a work id (the convertor matches nothing else).
WorkId = Annotated[str, Path(pattern=f"^{_WORK_ID}$")]
# What a worker sends as `expected_last_heartbeat` before its first heartbeat.
NO_HEARTBEAT: Final = "NO_HEARTBEAT"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Matches no heartbeat: what an `expected_last_heartbeat` that is no timestamp stands for.
_NEVER: Final = -1


@dataclass(frozen=True)
class Queue:
    """The environment whose queue a request is about, and its tenant."""

    tenant: str
    environment_id: str


async def _queue(
    environment_id: str,
    caller: Callers,
    services: Services,
    *,
    environment_key: bool,
    api_key: bool,
) -> Queue:
    if caller.environment_id is None and not api_key:
        raise ApiProblem(
            403,
            "this takes the environment's key (POST /v1/environments/{id}/keys makes one), "
            "not an API key",
        )
    if caller.environment_id is not None and not environment_key:
        raise ApiProblem(403, "this takes an API key, not an environment key")
    if caller.environment_id not in (None, environment_id):
        raise ApiProblem(404, f"no environment {environment_id!r}")
    environment = await services.store.get_resource(caller.tenant, ENVIRONMENT, environment_id)
    # Final, but a 409, not a 400: the same request is right once the environment is
    # updated to be self-hosted.
    if decode_stored(environment.body)["config"]["type"] != "self_hosted":
        raise ApiProblem(
            409,
            f"environment {environment_id!r} is not self_hosted: keel's own sandboxes run "
            "its tools, and it has no work queue",
        )
    return Queue(caller.tenant, environment_id)


async def _worker_queue(environment_id: str, caller: Callers, services: Services) -> Queue:
    return await _queue(environment_id, caller, services, environment_key=True, api_key=False)


async def _owner_queue(environment_id: str, caller: Callers, services: Services) -> Queue:
    return await _queue(environment_id, caller, services, environment_key=False, api_key=True)


async def _any_queue(environment_id: str, caller: Callers, services: Services) -> Queue:
    return await _queue(environment_id, caller, services, environment_key=True, api_key=True)


# The queue, for the environment's key only, an API key only, or either.
WorkerQueue = Annotated[Queue, Depends(_worker_queue)]
OwnerQueue = Annotated[Queue, Depends(_owner_queue)]
AnyQueue = Annotated[Queue, Depends(_any_queue)]


def heartbeat_text(heartbeat_us: int) -> str:
    """A heartbeat as the RFC 3339 timestamp a worker echoes back, to the microsecond."""
    at = _EPOCH + dt.timedelta(microseconds=heartbeat_us)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def heartbeat_of(text: str) -> int | None:
    """The heartbeat a worker names: None for `NO_HEARTBEAT`, `_NEVER` for anything that
    is no timestamp (it can match no heartbeat, so the answer is the 412 any stale one
    gets)."""
    if text == NO_HEARTBEAT:
        return None
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        return _NEVER
    if at.tzinfo is None:
        return _NEVER
    return (at - _EPOCH) // dt.timedelta(microseconds=1)


def _at(at: float | None) -> str | None:
    return None if at is None else rfc3339(at)


def work_view(item: WorkItem) -> dict[str, Any]:
    return {
        "id": item.work_id,
        "type": "work",
        "environment_id": item.environment_id,
        "state": item.state,
        "data": {"type": "session", "id": item.session_id},
        "metadata": item.metadata,
        "created_at": rfc3339(item.created_at),
        "acknowledged_at": _at(item.acknowledged_at),
        "started_at": _at(item.started_at),
        "latest_heartbeat_at": (
            None if item.heartbeat_us is None else heartbeat_text(item.heartbeat_us)
        ),
        "stop_requested_at": _at(item.stop_requested_at),
        "stopped_at": _at(item.stopped_at),
        # keel issues no per-item credential: the worker uses the environment key.
        "secret": None,
    }


def _lease_state(lease: WorkLease) -> dict[str, Any]:
    return {
        "last_heartbeat": None
        if lease.heartbeat_us is None
        else heartbeat_text(lease.heartbeat_us),
        "lease_extended": lease.extended,
        "state": lease.state,
        "ttl_seconds": lease.ttl_s,
    }


@router.get(f"{_PATH}/poll", response_class=Response)
async def poll_work(
    queue: WorkerQueue,
    services: Services,
    block_ms: Annotated[int | None, Query(ge=1, le=999)] = None,
    reclaim_older_than_ms: Annotated[int | None, Query(ge=1, le=86_400_000)] = None,
    worker_id: Annotated[str | None, Header(alias="anthropic-worker-id", max_length=128)] = None,
) -> Response:
    """The next work item for this worker, or JSON `null`: at once, or once work comes
    within `block_ms`. An item handed out and not acknowledged within
    `reclaim_older_than_ms` (5000) is handed out again."""
    reclaim_after = (
        RECLAIM_AFTER_S if reclaim_older_than_ms is None else reclaim_older_than_ms / 1000
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (block_ms or 0) / 1000
    while True:
        item = await services.store.poll_work(
            queue.tenant,
            queue.environment_id,
            worker_id=worker_id or None,
            reclaim_after=reclaim_after,
        )
        left = deadline - loop.time()
        if item is not None or left <= 0:
            return answer(None if item is None else work_view(item))
        await asyncio.sleep(min(services.work.recheck_s, left))


@router.get(f"{_PATH}/stats", response_class=Response)
async def work_stats(queue: AnyQueue, services: Services) -> Response:
    stats = await services.store.work_stats(queue.tenant, queue.environment_id)
    return answer(
        {
            "type": "work_queue_stats",
            "depth": stats.depth,
            "pending": stats.pending,
            "oldest_queued_at": _at(stats.oldest_queued_at),
            "workers_polling": stats.workers_polling,
        }
    )


@router.get(_PATH, response_class=Response)
async def list_work(
    queue: WorkerQueue,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    page_: Annotated[str | None, Query(alias="page", max_length=64)] = None,
) -> Response:
    """The environment's work items, newest first."""
    found = await services.store.list_work(
        queue.tenant, queue.environment_id, limit=limit, cursor=page_
    )
    return page([work_view(item) for item in found.items], found.next_cursor)


@router.get(_ITEM, response_class=Response)
async def retrieve_work(work_id: WorkId, queue: OwnerQueue, services: Services) -> Response:
    return answer(
        work_view(await services.store.get_work(queue.tenant, queue.environment_id, work_id))
    )


@router.post(_ITEM, response_class=Response)
async def update_work(
    work_id: WorkId, queue: OwnerQueue, request: Request, services: Services
) -> Response:
    """Patch the item's metadata: a key sent as null is removed."""
    params = await decode_body(request, WorkUpdateParams)
    item = await services.store.patch_work_metadata(
        queue.tenant, queue.environment_id, work_id, params.metadata
    )
    return answer(work_view(item))


@router.post(f"{_ITEM}/ack", response_class=Response)
async def ack_work(work_id: WorkId, queue: WorkerQueue, services: Services) -> Response:
    """Take the item a poll handed out: `starting`, leased until the first heartbeat."""
    item = await services.store.ack_work(
        queue.tenant, queue.environment_id, work_id, ttl=services.work.lease_s
    )
    return answer(work_view(item))


@router.post(f"{_ITEM}/heartbeat", response_class=Response)
async def heartbeat_work(
    work_id: WorkId,
    queue: WorkerQueue,
    services: Services,
    expected_last_heartbeat: Annotated[str | None, Query(max_length=64)] = None,
    desired_ttl_seconds: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Keep the lease: `expected_last_heartbeat` is `NO_HEARTBEAT` first, then the
    `last_heartbeat` the previous answer gave; anything else is a 412. `lease_extended:
    false` tells the worker to stop (the item is stopping or stopped)."""
    ttl = min(desired_ttl_seconds or services.work.lease_s, services.work.max_lease_s)
    try:
        lease = await services.store.heartbeat_work(
            queue.tenant,
            queue.environment_id,
            work_id,
            ttl=ttl,
            expected=None
            if expected_last_heartbeat is None
            else heartbeat_of(expected_last_heartbeat),
            check=expected_last_heartbeat is not None,
        )
    except HeartbeatMismatch as exc:
        raise ApiProblem(
            412,
            "expected_last_heartbeat is not the item's last heartbeat: another worker may hold it",
            "heartbeat_precondition_failed",
            details={
                "error_code": "heartbeat_precondition_failed",
                "current_state": _lease_state(exc.lease),
            },
        ) from exc
    state = _lease_state(lease)
    return answer(
        {"type": "work_heartbeat", **state, "last_heartbeat": state["last_heartbeat"] or ""}
    )


@router.post(f"{_ITEM}/stop", response_class=Response)
async def stop_work(
    work_id: WorkId, queue: AnyQueue, request: Request, services: Services
) -> Response:
    """Stop the item: at once with `force`, else once its worker's next heartbeat hears of
    it. A stopped item is a 409. While its session still waits on the worker, the next
    poll makes it a new item."""
    params = await decode_optional_body(request, WorkStopParams)
    item = await services.store.stop_work(
        queue.tenant, queue.environment_id, work_id, force=params.force
    )
    return answer(work_view(item))
