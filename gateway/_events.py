"""A session's events: append user input, read the log, and stream it live as SSE."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from gateway._access import QueryFirst, Session
from gateway._bodies import decode_body
from gateway._errors import ApiProblem, json_response
from gateway._idempotency import Keys
from gateway._openapi import body_of, responds_with, stream_responses
from gateway._services import Services
from gateway._sessions import MAX_PAGE
from gateway._stream import event_stream
from gateway._views import event_view, posted
from schemas import MAX_SEQ, TERMINAL_STATUSES, EventPage, PostedEvents, PostEvents

router = APIRouter(route_class=QueryFirst)


@router.post(
    "/v1/sessions/{session_id}/events",
    status_code=202,
    openapi_extra=body_of(PostEvents) | responds_with(202, PostedEvents, write=True),
    response_class=Response,
)
async def post_events(
    keys: Keys, session: Session, request: Request, services: Services
) -> Response:
    """Append user input (messages, interrupts, approval decisions), in order; the agent
    takes it up as soon as it can, even while it is busy."""
    body = await decode_body(request, PostEvents)
    if session.status in TERMINAL_STATUSES:
        raise ApiProblem(409, f"the session is {session.status}; it takes no more input")
    appended = await services.store.append_input(
        session.session_id, body.events, keyed=keys.keyed(posted)
    )
    keys.wrote()
    await services.announcer.announce(session.session_id, "user input", appended.head_seq)
    return posted(appended)


@router.get(
    "/v1/sessions/{session_id}/events",
    openapi_extra=responds_with(200, EventPage),
    response_class=Response,
)
async def read_events(
    session: Session,
    services: Services,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Response:
    """The log after seq `after`, in order, at most `limit` events."""
    records = await services.store.read(session.session_id, after_seq=after, limit=limit)
    items = [event_view(record) for record in records]
    next_after = items[-1].seq if len(items) == limit else None
    return json_response(EventPage(items=items, next_after=next_after))


@router.get(
    "/v1/sessions/{session_id}/stream",
    response_class=StreamingResponse,
    openapi_extra=stream_responses(),
)
async def stream_events(
    session: Session,
    request: Request,
    services: Services,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    deltas: bool = False,
) -> StreamingResponse:
    """The log as Server-Sent Events (`id: <seq>`), then live until the session ends.
    Resume with `Last-Event-ID` (or `after`): no gap, no duplicate. `deltas=true` adds
    the model's text as it streams (`event: delta`, not replayable)."""
    last_event_id = request.headers.get("last-event-id")
    if last_event_id is not None:
        if not last_event_id.isdigit() or int(last_event_id) > MAX_SEQ:
            raise ApiProblem(422, "Last-Event-ID must be the seq of an event")
        after = int(last_event_id)
    return StreamingResponse(
        event_stream(
            services.store,
            services.nc,
            services.feeds,
            session.session_id,
            after or 0,
            deltas=deltas,
            settings=services.stream,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
