"""The HTTP API: sessions and their events under `/v1`, for a tenant named by a bearer key.

Bodies are msgspec Structs (`schemas._api`), decoded here with a size limit; their JSON
Schema is what the served OpenAPI shows. Another tenant's session is a 404, as if it did not
exist.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeVar

import msgspec
from fastapi import FastAPI, Query, Request, Response

from gateway._errors import ApiProblem, install_error_handlers, json_response
from gateway._openapi import body_of, install_openapi, responds_with
from gateway._work import Announcer
from schemas import (
    TERMINAL_STATUSES,
    CreateSession,
    EventPage,
    EventView,
    PostedEvents,
    PostEvents,
    Recorded,
    SessionCreated,
    SessionList,
    SessionView,
    Status,
    UnknownEvent,
    UserMessage,
)
from session_store import EventStore, SessionInfo, SessionNotFound

T = TypeVar("T")

# A request body larger than this is refused with 413 before it is decoded.
MAX_BODY_BYTES: Final = 1_000_000
MAX_PAGE: Final = 500


def create_app(store: EventStore, announcer: Announcer) -> FastAPI:
    app = FastAPI(
        title="keel",
        version="0.1.0",
        summary="Long-running AI agents on an event-sourced session log.",
    )
    install_error_handlers(app)
    install_openapi(app)

    async def tenant_of(request: Request) -> str:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiProblem(401, "send your API key as 'Authorization: Bearer <key>'")
        tenant = await store.tenant_for_key(key.strip())
        if tenant is None:
            raise ApiProblem(401, "unknown API key")
        return tenant

    async def session_of(request: Request, session_id: str) -> SessionInfo:
        tenant = await tenant_of(request)
        try:
            info = await store.get_session(session_id)
        except SessionNotFound:
            info = None
        if info is None or info.tenant != tenant:
            raise ApiProblem(404, f"no session {session_id!r}")
        return info

    @app.post(
        "/v1/sessions",
        status_code=201,
        openapi_extra=body_of(CreateSession) | responds_with(201, SessionView),
        response_class=Response,
    )
    async def create_session(request: Request) -> Response:
        """Create a session that runs `spec`; with `message`, the agent starts at once."""
        tenant = await tenant_of(request)
        body = await decode_body(request, CreateSession)
        info = await store.create_session(
            tenant, SessionCreated(spec=body.spec, title=body.title, metadata=body.metadata)
        )
        if body.message is not None:
            appended = await store.append_input(info.session_id, [UserMessage(text=body.message)])
            await announcer.announce(info.session_id, "user.message")
            info = msgspec.structs.replace(info, head_seq=appended.head_seq)
        return json_response(session_view(info), 201)

    @app.get(
        "/v1/sessions",
        openapi_extra=responds_with(200, SessionList),
        response_class=Response,
    )
    async def list_sessions(
        request: Request,
        status: Status | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        """The tenant's sessions, newest first, optionally of one status."""
        tenant = await tenant_of(request)
        page = await store.list_sessions(tenant, status=status, limit=limit, cursor=cursor)
        return json_response(
            SessionList(
                items=[session_view(info) for info in page.items], next_cursor=page.next_cursor
            )
        )

    @app.get(
        "/v1/sessions/{session_id}",
        openapi_extra=responds_with(200, SessionView),
        response_class=Response,
    )
    async def get_session(request: Request, session_id: str) -> Response:
        return json_response(session_view(await session_of(request, session_id)))

    @app.post(
        "/v1/sessions/{session_id}/events",
        status_code=202,
        openapi_extra=body_of(PostEvents) | responds_with(202, PostedEvents),
        response_class=Response,
    )
    async def post_events(request: Request, session_id: str) -> Response:
        """Append user input (messages, interrupts, approval decisions), in order; the agent
        takes it up as soon as it can, even while it is busy."""
        info = await session_of(request, session_id)
        body = await decode_body(request, PostEvents)
        if not body.events:
            raise ApiProblem(422, "events: at least one event is required")
        if info.status in TERMINAL_STATUSES:
            raise ApiProblem(409, f"the session is {info.status}; it takes no more input")
        appended = await store.append_input(session_id, body.events)
        await announcer.announce(session_id, "user input")
        return json_response(PostedEvents(head_seq=appended.head_seq), 202)

    @app.get(
        "/v1/sessions/{session_id}/events",
        openapi_extra=responds_with(200, EventPage),
        response_class=Response,
    )
    async def read_events(
        request: Request,
        session_id: str,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response:
        """The log after seq `after`, in order, at most `limit` events."""
        await session_of(request, session_id)
        records = await store.read(session_id, after_seq=after, limit=limit)
        items = [event_view(record) for record in records]
        next_after = items[-1].seq if len(items) == limit else None
        return json_response(EventPage(items=items, next_after=next_after))

    return app


async def decode_body(request: Request, kind: type[T]) -> T:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiProblem(413, f"the body is over {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiProblem(413, f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiProblem(422, str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiProblem(422, f"the body is not valid JSON: {exc}") from exc


def session_view(info: SessionInfo) -> SessionView:
    return SessionView(
        id=info.session_id,
        status=info.status,
        status_reason=info.status_reason,
        head_seq=info.head_seq,
        created_at=info.created_at,
        updated_at=info.updated_at,
    )


def event_view(record: Recorded) -> EventView:
    data: Any
    if isinstance(record.event, UnknownEvent):
        try:
            data = msgspec.json.decode(record.event.data)
        except msgspec.DecodeError:
            data = {"raw": record.event.data}
    else:
        data = msgspec.to_builtins(record.event)
    return EventView(seq=record.seq, at=record.at, type=record.type, data=data)
