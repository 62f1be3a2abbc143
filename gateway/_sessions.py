"""Sessions as a resource: create, list, get, delete, fork, pause, resume, cancel; a
session's threads."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request, Response

from gateway._access import QueryFirst, Session, Tenant
from gateway._bodies import decode_body
from gateway._errors import ApiProblem, json_response
from gateway._idempotency import Idempotency, Keys
from gateway._openapi import body_of, responds_with
from gateway._services import GatewayServices, Services
from gateway._views import posted, session_view
from schemas import (
    AgentSpec,
    CreateSession,
    ForkSession,
    ModelSpec,
    PostedEvents,
    SessionCreated,
    SessionList,
    SessionStatus,
    SessionView,
    Status,
    UserMessage,
)
from session_store import SessionInfo

MAX_PAGE: Final = 500
# The latest creation time a list filter takes (unix seconds, year 36812).
MAX_TIME: Final = float(2**40)
_PAUSABLE: Final = frozenset({"idle", "running", "waiting"})
_PAUSED: Final = frozenset({"paused"})
_CANCELLABLE: Final = frozenset({"idle", "running", "waiting", "paused"})

router = APIRouter(route_class=QueryFirst)


def created(info: SessionInfo) -> Response:
    return json_response(session_view(info), 201)


def deleted(_: None) -> Response:
    return Response(status_code=204)


@router.post(
    "/v1/sessions",
    status_code=201,
    openapi_extra=body_of(CreateSession)
    | responds_with(
        201,
        SessionView,
        write=True,
        refused="the spec names a model server or key variable, which this keel's operator "
        "does not let a session choose",
    ),
    response_class=Response,
)
async def create_session(
    keys: Keys, tenant: Tenant, request: Request, services: Services
) -> Response:
    """Create a session that runs `spec`; with `message`, the agent starts at once."""
    body = await decode_body(request, CreateSession)
    if not services.tenant_model_endpoints:
        _refuse_model_endpoints(body.spec)
    info = await services.store.create_session(
        tenant,
        SessionCreated(spec=body.spec, title=body.title, metadata=body.metadata),
        first_input=[UserMessage(text=body.message)] if body.message is not None else (),
        keyed=keys.keyed(created),
    )
    keys.wrote()
    if body.message is not None:
        await services.announcer.announce(info.session_id, "user.message", info.head_seq)
    return created(info)


def _refuse_model_endpoints(spec: AgentSpec) -> None:
    """A model's server and key variable are the operator's to name (the models file): a
    tenant that could set both would have the brain send its key for `ANTHROPIC_API_KEY`, or
    any variable it names, to a server of the tenant's choosing. The agents its threads may
    run (`spec.subagents.roster`) are held to the same."""
    models = _models_of(spec, "spec")
    for where, model in models.items():
        if model is None:
            continue
        named = {
            "base_url": model.base_url,
            "api_key_env": model.api_key_env,
            "options.api_key_env": model.options.get("api_key_env"),
        }
        for field, value in named.items():
            if value is not None:
                raise ApiProblem(
                    400,
                    f"{where}.{field}: this keel does not let a session choose its model's "
                    "server or key; its operator routes models (KEEL_MODELS_FILE), or allows "
                    "this with KEEL_TENANT_MODEL_ENDPOINTS=1",
                )


def _models_of(spec: AgentSpec, where: str) -> dict[str, ModelSpec | None]:
    models = {
        f"{where}.model": spec.model,
        f"{where}.completion.judge_model": spec.completion.judge_model,
        f"{where}.context.summary_model": spec.context.summary_model,
    }
    if spec.subagents is not None:
        for i, entry in enumerate(spec.subagents.roster):
            models |= _models_of(entry.spec, f"{where}.subagents.roster[{i}].spec")
    return models


@router.get(
    "/v1/sessions",
    openapi_extra=responds_with(200, SessionList),
    response_class=Response,
)
async def list_sessions(
    tenant: Tenant,
    services: Services,
    status: Status | None = None,
    created_after: Annotated[float | None, Query(ge=0, le=MAX_TIME)] = None,
    created_before: Annotated[float | None, Query(ge=0, le=MAX_TIME)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The tenant's sessions, newest first: optionally of one status, created at or
    after `created_after` and before `created_before` (unix seconds)."""
    page = await services.store.list_sessions(
        tenant,
        status=status,
        created_after=created_after,
        created_before=created_before,
        limit=limit,
        cursor=cursor,
    )
    return json_response(
        SessionList(items=[session_view(info) for info in page.items], next_cursor=page.next_cursor)
    )


@router.post(
    "/v1/sessions/{session_id}/fork",
    status_code=201,
    openapi_extra=body_of(ForkSession) | responds_with(201, SessionView, write=True),
    response_class=Response,
)
async def fork_session(
    keys: Keys, parent: Session, request: Request, services: Services
) -> Response:
    """Time travel: a new session whose log starts as a copy of this one's up to
    `at_seq` (recorded with `session.forked`); this one is left as it is."""
    body = await decode_body(request, ForkSession)
    if body.at_seq > parent.head_seq:
        raise ApiProblem(409, f"at_seq {body.at_seq} is past the log's head ({parent.head_seq})")
    child = await services.store.fork_session(
        parent.session_id, body.at_seq, parent.tenant, keyed=keys.keyed(created)
    )
    keys.wrote()
    # The copy may end on input nobody has answered yet.
    await services.announcer.announce(child.session_id, "forked", child.head_seq)
    return created(child)


# Pause, resume and cancel each append a session.status event, answered as input is.
_STATUS_CHANGE: Final[dict[str, Any]] = {
    "status_code": 202,
    "openapi_extra": responds_with(202, PostedEvents, write=True),
    "response_class": Response,
}


async def change_status(
    keys: Idempotency,
    info: SessionInfo,
    services: GatewayServices,
    to: Status,
    allowed_from: frozenset[str],
    why: str,
) -> Response:
    if info.status not in allowed_from:
        raise ApiProblem(409, f"the session is {info.status}; it cannot be {why}")
    appended = await services.store.append_input(
        info.session_id,
        [SessionStatus(status=to, reason=f"{why} by the user")],
        keyed=keys.keyed(posted),
    )
    keys.wrote()
    await services.announcer.announce(info.session_id, why, appended.head_seq)
    return posted(appended)


@router.post("/v1/sessions/{session_id}/pause", **_STATUS_CHANGE)
async def pause(keys: Keys, session: Session, services: Services) -> Response:
    """Stop taking new steps (calls in flight finish and are recorded)."""
    return await change_status(keys, session, services, "paused", _PAUSABLE, "paused")


@router.post("/v1/sessions/{session_id}/resume", **_STATUS_CHANGE)
async def resume(keys: Keys, session: Session, services: Services) -> Response:
    """Carry on from where it paused (a budget or loop guard is cleared too)."""
    return await change_status(keys, session, services, "running", _PAUSED, "resumed")


@router.post("/v1/sessions/{session_id}/cancel", **_STATUS_CHANGE)
async def cancel(keys: Keys, session: Session, services: Services) -> Response:
    """End the session for good: calls not sent never run, calls in flight are stopped,
    and each still gets its one recorded outcome."""
    return await change_status(keys, session, services, "cancelled", _CANCELLABLE, "cancelled")


@router.get(
    "/v1/sessions/{session_id}",
    openapi_extra=responds_with(200, SessionView),
    response_class=Response,
)
async def get_session(session: Session) -> Response:
    """Status, head seq, title, metadata, and totals of usage, cost and turns."""
    return json_response(session_view(session))


@router.get(
    "/v1/sessions/{session_id}/threads",
    openapi_extra=responds_with(200, SessionList),
    response_class=Response,
)
async def list_threads(session: Session, services: Services) -> Response:
    """The session's threads (the sub-agents its calls spawned), oldest first, in one page;
    each is a session of its own, read at `/v1/sessions/{thread_id}`. A thread has none."""
    threads = await services.store.list_threads(session.session_id)
    return json_response(SessionList(items=[session_view(thread) for thread in threads]))


@router.delete(
    "/v1/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    openapi_extra=responds_with(204, None, write=True),
)
async def delete_session(keys: Keys, session: Session, services: Services) -> Response:
    """Remove a finished session and its log for good; a session that is not finished
    (or whose brain is still recording its last events) is a 409: cancel it first."""
    await services.store.delete_session(session.session_id, keyed=keys.keyed(deleted))
    keys.wrote()
    return deleted(None)
