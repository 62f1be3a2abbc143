"""A session's threads in the Managed Agents shapes: list, retrieve, archive, and each
thread's events (a page, and the live stream).

The primary thread is the session itself (its id is the session's); every other thread is
a session of keel's spawned by a call of the session or of one of its threads, listed under
the session it belongs to (`thread_of`). A thread's events are the projection of its own
log, as a session's are (`_projection`, `_thread_events`).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from gateway._access import QueryFirst
from gateway._dialect import MANAGED_PREFIX
from gateway._errors import ApiProblem
from gateway._services import GatewayServices, Services
from gateway.managed._agents import KIND as AGENT
from gateway.managed._agents import agent_view
from gateway.managed._common import (
    MAX_LIMIT,
    ManagedSession,
    ManagedWorkerSession,
    answer,
    page,
)
from gateway.managed._event_ids import EVENT_ID_PATTERN
from gateway.managed._events import events_page, stream_of
from gateway.managed._folds import KeptProjections
from gateway.managed._projection import (
    managed_status,
    rfc3339,
    usage_view,
)
from gateway.managed._sessions import agent_snapshot, snapshot_of
from schemas import AgentSpec, SessionArchived, SessionCreated
from session_store import SessionInfo

router = APIRouter(prefix=MANAGED_PREFIX, route_class=QueryFirst, tags=["managed agents"])

ThreadStatus = Literal["running", "idle", "rescheduling", "terminated"]
_ID: Final = r"^[A-Za-z0-9_.:-]{1,64}$"
# How many threads one page shows at most, and by default (the SDK's default is 1000).
_MAX_THREADS: Final = 1000


@router.get("/v1/sessions/{session_id}/threads", response_class=Response)
async def list_threads(
    session: ManagedWorkerSession,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=_MAX_THREADS)] = _MAX_THREADS,
    page_: Annotated[str | None, Query(alias="page", pattern=r"^[0-9]{1,9}$")] = None,
    statuses: Annotated[list[ThreadStatus] | None, Query(alias="statuses[]")] = None,
) -> Response:
    """The session's threads, the primary one first, then the others oldest first."""
    threads = [session, *await services.store.list_threads(session.session_id)]
    if statuses:
        wanted = set(statuses)
        threads = [t for t in threads if managed_status(t.status, t.status_reason) in wanted]
    start = int(page_) if page_ else 0
    chunk = threads[start : start + limit]
    more = start + limit < len(threads)
    views = [await _thread_view(session, thread, services) for thread in chunk]
    return page(views, str(start + limit) if more else None)


@router.get("/v1/sessions/{session_id}/threads/{thread_id}", response_class=Response)
async def retrieve_thread(
    thread_id: Annotated[str, Path(pattern=_ID)],
    session: ManagedWorkerSession,
    services: Services,
) -> Response:
    thread = await _thread_of(session, thread_id, services)
    return answer(await _thread_view(session, thread, services))


@router.post("/v1/sessions/{session_id}/threads/{thread_id}/archive", response_class=Response)
async def archive_thread(
    thread_id: Annotated[str, Path(pattern=_ID)], session: ManagedSession, services: Services
) -> Response:
    """Archive a thread: it is put away, and takes no more messages. The primary thread is
    archived with its session (`sessions.archive`)."""
    thread = await _thread_of(session, thread_id, services)
    if thread.session_id == session.session_id:
        raise ApiProblem(409, "the primary thread is the session: archive the session itself")
    if thread.archived_at is None:
        thread = await services.store.amend_session(thread.session_id, SessionArchived())
    return answer(await _thread_view(session, thread, services))


@router.get("/v1/sessions/{session_id}/threads/{thread_id}/events", response_class=Response)
async def list_thread_events(
    thread_id: Annotated[str, Path(pattern=_ID)],
    session: ManagedWorkerSession,
    services: Services,
    projections: KeptProjections,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = MAX_LIMIT,
    page_: Annotated[str | None, Query(alias="page", pattern=EVENT_ID_PATTERN)] = None,
) -> Response:
    """A thread's events, oldest first; `page` is the previous page's `next_page`."""
    thread = await _thread_of(session, thread_id, services)
    return await events_page(services, projections, thread.session_id, limit, page_)


@router.get(
    "/v1/sessions/{session_id}/threads/{thread_id}/stream", response_class=StreamingResponse
)
async def stream_thread_events(
    thread_id: Annotated[str, Path(pattern=_ID)],
    session: ManagedWorkerSession,
    request: Request,
    services: Services,
    projections: KeptProjections,
    event_deltas: Annotated[
        list[Literal["agent.message", "agent.thinking"]] | None, Query(alias="event_deltas[]")
    ] = None,
) -> StreamingResponse:
    """A thread's live events, as the session's stream serves them."""
    thread = await _thread_of(session, thread_id, services)
    return stream_of(services, projections, thread.session_id, request, event_deltas)


async def _thread_of(
    session: SessionInfo, thread_id: str, services: GatewayServices
) -> SessionInfo:
    """The thread `thread_id` of the session (the primary one is the session), else a 404."""
    if thread_id == session.session_id:
        return session
    for thread in await services.store.list_threads(session.session_id):
        if thread.session_id == thread_id:
            return thread
    raise ApiProblem(404, f"no thread {thread_id!r} in session {session.session_id}")


async def _thread_view(
    session: SessionInfo, thread: SessionInfo, services: GatewayServices
) -> dict[str, Any]:
    primary = thread.session_id == session.session_id
    elapsed = thread.updated_at - thread.created_at
    usage = usage_view(thread.usage, thread.cost_usd)
    return {
        "id": thread.session_id,
        "type": "session_thread",
        "session_id": session.session_id,
        "parent_thread_id": None if primary else thread.parent_session_id,
        "workflow_run_id": None,
        "agent": await (
            agent_snapshot(session, services) if primary else _thread_agent(thread, services)
        ),
        "status": managed_status(thread.status, thread.status_reason),
        "stats": {"active_seconds": elapsed, "duration_seconds": elapsed, "startup_seconds": 0},
        "usage": {**usage, "active_seconds": elapsed},
        "created_at": rfc3339(thread.created_at),
        "updated_at": rfc3339(thread.updated_at),
        "archived_at": None if thread.archived_at is None else rfc3339(thread.archived_at),
    }


async def _thread_agent(thread: SessionInfo, services: GatewayServices) -> dict[str, Any]:
    """The agent a thread runs: the saved agent version of the roster it came from, or the
    inline agent it was spawned with."""
    created = (await services.store.read(thread.session_id, limit=1))[0].event
    assert isinstance(created, SessionCreated) and created.thread is not None
    parent = (await services.store.read(created.thread.parent_session_id, limit=1))[0].event
    assert isinstance(parent, SessionCreated)
    subagents = parent.spec.subagents
    entry = (
        next(
            (e for e in subagents.roster if e.name == created.thread.agent_name),
            None,
        )
        if subagents is not None
        else None
    )
    if entry is not None and entry.agent_id is not None and entry.agent_version is not None:
        stored = await services.store.get_resource(
            thread.tenant, AGENT, entry.agent_id, entry.agent_version
        )
        return {**snapshot_of(agent_view(stored)), "multiagent": None}
    return _inline(created.thread.agent_name, created.spec)


def _inline(name: str, spec: AgentSpec) -> dict[str, Any]:
    return {
        "type": "inline",
        "name": name,
        "description": None,
        "system": spec.system_prompt or None,
        "model": {"id": spec.model.name, "speed": "standard"},
        "tools": [],
        "skills": [],
        "mcp_servers": [],
        "execution_identity": {"type": "service_account"},
    }
