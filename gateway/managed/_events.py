"""A session's events in the Managed Agents shapes: send, list, and the live stream.

All three are the projection of keel's log (`_projection`): what is sent is checked and
appended to the log, and answered as the events it became; a list and a stream show the log
projected. The stream is live from the moment it opens and stays open past idle (a session
takes more input); `Last-Event-ID` (keel's extension) replays after that event first. With
`event_deltas[]=agent.message` it also previews messages as the model writes them
(`_previews`). All three also take the key of the session's self-hosted environment: its
worker reads the calls and posts their results here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Final, Literal

import msgspec
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from gateway._access import QueryFirst
from gateway._bodies import decode_body
from gateway._dialect import MANAGED_PREFIX
from gateway._errors import ApiProblem
from gateway._idempotency import Idempotency, WorkerKeys
from gateway._services import GatewayServices, Services
from gateway.managed._common import MAX_LIMIT, ManagedWorkerSession, answer, page
from gateway.managed._event_ids import EVENT_ID_PATTERN, event_id, parse_event_id, position
from gateway.managed._folds import (
    READ_BATCH,
    KeptProjections,
    Projections,
    fold,
    fold_from_nearest,
    fold_records,
)
from gateway.managed._previews import Previews, previews_of
from gateway.managed._projection import EventType, Projection
from gateway.managed._shapes import SendEvents
from gateway.managed._thread_input import Indexed, SessionLogs
from gateway.managed._user_events import to_log
from schemas import TERMINAL_STATUSES, Recorded, event_type
from session_store import Conflict, SessionNotFound

router = APIRouter(prefix=MANAGED_PREFIX, route_class=QueryFirst, tags=["managed agents"])

_ENCODER: Final = msgspec.json.Encoder()
# Appends refused because the log grew meanwhile (a brain's), retried on the new head.
_SEND_ATTEMPTS: Final = 20


@router.post("/v1/sessions/{session_id}/events", response_class=Response)
async def send_events(
    keys: WorkerKeys,
    session: ManagedWorkerSession,
    request: Request,
    services: Services,
    projections: KeptProjections,
) -> Response:
    """Send user events, in order: messages, interrupts, tool confirmations, and results of
    the calls the client runs. Those for a thread of the session (an interrupt naming it,
    the answer to a call of it) go to the thread's log (`_thread_input`). Answers them as
    stored: the threads' first, then the session's own."""
    body = await decode_body(request, SendEvents)
    if session.status in TERMINAL_STATUSES:
        raise ApiProblem(409, f"the session is terminated ({session.status}); it takes no input")
    if session.archived_at is not None:
        raise ApiProblem(409, "the session is archived; it takes no input")
    own = projections.at_most(session.session_id, session.head_seq)
    await fold(services.store, session.session_id, own, projections, keep=False)
    logs = SessionLogs(session, own, services, projections)
    routed = await logs.route(body.events)
    own_params = routed.pop(session.session_id)
    # The session's own part is checked before any thread's log is written: a refusal
    # there writes nothing.
    to_log(own_params, own.copy())
    writes = [*routed.items(), *([(session.session_id, own_params)] if own_params else [])]
    sent: list[dict[str, Any]] = []
    for n, (log_id, params) in enumerate(writes):
        last = n == len(writes) - 1
        sent.extend(
            await _append(services, projections, log_id, params, keys if last else None, sent)
        )
    return answer({"data": sent})


async def _append(
    services: GatewayServices,
    projections: Projections,
    log_id: str,
    params: list[Indexed],
    keys: Idempotency | None,
    sent_before: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Append the events of `params` to one log (the session's, or a thread's), checked at
    the head the append expects; the events they became. The request's key, if given
    `keys`, is recorded with this append: the request's last."""
    projection = projections.at_most(log_id, 2**63)
    for _ in range(_SEND_ATTEMPTS):
        await fold(services.store, log_id, projection, projections, keep=False)
        events = to_log(params, projection)
        head = projection.seq
        sent = _sent(projection, head, events)
        respond = _responder([*sent_before, *sent])
        try:
            appended = await services.store.append_input(
                log_id,
                events,
                expect_seq=head,
                keyed=None if keys is None else keys.keyed(respond),
            )
        except Conflict:
            continue
        if keys is not None:
            keys.wrote()
        await services.announcer.announce(log_id, "user input", appended.head_seq)
        return sent
    raise ApiProblem(409, "the session's log kept growing; try again", retry_after=1)


def _responder(sent: list[dict[str, Any]]) -> Callable[[object], Response]:
    return lambda _: answer({"data": sent})


def _sent(projection: Projection, head: int, events: list[Any]) -> list[dict[str, Any]]:
    """The appended events as the stream will show them (projected on a copy), stamped with
    the gateway's clock: the answer is made before the append that records it."""
    copy = projection.copy()
    now = time.time()
    out: list[dict[str, Any]] = []
    for offset, event in enumerate(events, start=1):
        record = Recorded(seq=head + offset, at=now, type=event_type(event), event=event)
        out.extend(copy.project(record))
    return out


@router.get("/v1/sessions/{session_id}/events", response_class=Response)
async def list_events(
    session: ManagedWorkerSession,
    services: Services,
    projections: KeptProjections,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = MAX_LIMIT,
    page_: Annotated[str | None, Query(alias="page", pattern=EVENT_ID_PATTERN)] = None,
    order: Literal["asc", "desc"] = "asc",
    types: Annotated[list[EventType] | None, Query(alias="types[]")] = None,
) -> Response:
    """The session's events, oldest first (or `order=desc`), optionally of some `types`;
    `page` is the previous page's `next_page`."""
    return await events_page(services, projections, session.session_id, limit, page_, order, types)


async def events_page(
    services: GatewayServices,
    projections: Projections,
    session_id: str,
    limit: int,
    page_: str | None,
    order: Literal["asc", "desc"] = "asc",
    types: list[EventType] | None = None,
) -> Response:
    """A page of a log's events (a session's, or a thread's), as `list_events` answers."""
    after = None if page_ is None else parse_event_id(page_)  # the query's pattern is an id's
    wanted: set[str] | None = set(types) if types else None
    if order == "desc":
        return _newest_first(
            await fold(services.store, session_id, Projection(), projections, keep=True),
            wanted,
            page_,
            limit,
        )
    # Oldest first: from where the page starts, as far as it goes (and one more, to know).
    projection = await fold_from_nearest(
        services.store,
        session_id,
        projections,
        through_seq=after[0] - 1 if after else 0,
    )
    chunk: list[dict[str, Any]] = []
    while len(chunk) <= limit:
        head = projection.seq
        for event in await fold(
            services.store,
            session_id,
            projection,
            projections,
            keep=True,
            through_seq=head + READ_BATCH,
        ):
            at = parse_event_id(position(event))
            if (after is None or (at is not None and at > after)) and (
                wanted is None or event["type"] in wanted
            ):
                chunk.append(event)
        if projection.seq < head + READ_BATCH:
            break  # the head
    more = len(chunk) > limit
    chunk = chunk[:limit]
    return page(chunk, position(chunk[-1]) if more else None)


def _newest_first(
    events: list[dict[str, Any]], wanted: set[str] | None, after: str | None, limit: int
) -> Response:
    if wanted is not None:
        events = [e for e in events if e["type"] in wanted]
    events.reverse()
    start = 0
    if after is not None:
        start = next((i + 1 for i, e in enumerate(events) if position(e) == after), len(events))
    chunk = events[start : start + limit]
    more = start + limit < len(events)
    return page(chunk, position(chunk[-1]) if more and chunk else None)


@router.get("/v1/sessions/{session_id}/events/stream", response_class=StreamingResponse)
async def stream_events(
    session: ManagedWorkerSession,
    request: Request,
    services: Services,
    projections: KeptProjections,
    event_deltas: Annotated[
        list[Literal["agent.message", "agent.thinking"]] | None, Query(alias="event_deltas[]")
    ] = None,
) -> StreamingResponse:
    """Live events as Server-Sent Events (`event: <type>`, `id: <event id>`), from now on,
    open past idle until the session ends or is deleted. `Last-Event-ID: <event id>`
    replays what came after that event first. `event_deltas[]=agent.message` adds live
    previews of the messages being written (`event_start`, `event_delta`)."""
    return stream_of(services, projections, session.session_id, request, event_deltas)


def stream_of(
    services: GatewayServices,
    projections: Projections,
    session_id: str,
    request: Request,
    event_deltas: list[Literal["agent.message", "agent.thinking"]] | None,
) -> StreamingResponse:
    """The live stream of a log's events (a session's, or a thread's)."""
    resume = None
    last_event_id = request.headers.get("last-event-id")
    if last_event_id is not None:
        resume = parse_event_id(last_event_id)
        if resume is None:
            raise ApiProblem(400, "Last-Event-ID must be an event id of this session")
    previews = "agent.message" in (event_deltas or ())
    return StreamingResponse(
        _live(services, projections, session_id, resume, previews),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _live(
    services: GatewayServices,
    projections: Projections,
    session_id: str,
    resume: tuple[int, int] | None,
    previewed: bool,
) -> AsyncIterator[bytes]:
    heartbeat = services.stream.heartbeat_s
    # Live from the head on, or after the event resumed from.
    start = 2**63 if resume is None else resume[0] - 1
    projection = projections.at_most(session_id, start)
    async with (
        previews_of(services.nc, session_id, previewed) as previews,
        services.feeds.follow(session_id) as feed,
    ):
        change = feed.next_change()
        try:
            if resume is None:
                await fold(services.store, session_id, projection, projections, keep=False)
            else:
                seq, part = resume
                await fold(
                    services.store,
                    session_id,
                    projection,
                    projections,
                    keep=False,
                    through_seq=start,
                )
                for event in await fold(
                    services.store, session_id, projection, projections, keep=True
                ):
                    at = parse_event_id(position(event))
                    if at is not None and at > (seq, part):
                        yield _frame(event)
            yield b"retry: 1000\n\n"
            while True:
                heard = await _next(change, previews, heartbeat)
                sent = False
                if previews is not None:
                    # Before the log is read: a preview comes before the message it previews.
                    for frame in previews.take(projection.seq, projection.threads.own_thread_id()):
                        yield frame
                        sent = True
                if heard == "previews":
                    continue
                change = feed.next_change()
                # What the feed read for every stream of the session, else (a stream behind
                # its window) the store.
                if feed.gone:
                    raise SessionNotFound(session_id)
                kept = feed.records_after(projection.seq)
                events = (
                    fold_records(kept, session_id, projection, projections)
                    if kept is not None
                    else await fold(services.store, session_id, projection, projections, keep=True)
                )
                for event in events:
                    yield _frame(event)
                    if event["type"] == "session.status_terminated":
                        return
                if not events and not sent:
                    yield b": keep-alive\n\n"
        except SessionNotFound:
            last = projection.seq + 1
            deleted = {
                "id": event_id(last, 0, projection.threads.own_thread_id()),
                "type": "session.deleted",
            }
            yield _frame({**deleted, "processed_at": None})


async def _next(
    change: asyncio.Event, previews: Previews | None, wait_s: float
) -> Literal["log", "previews", "nothing"]:
    """Wait for the log to change or deltas to arrive, at most `wait_s` (then the log is
    read anyway, and a quiet stream keeps itself alive)."""
    waits = [asyncio.ensure_future(change.wait())]
    if previews is not None:
        waits.append(asyncio.ensure_future(previews.arrived.wait()))
    try:
        await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
    if change.is_set():
        return "log"
    return "previews" if previews is not None and previews.arrived.is_set() else "nothing"


def _frame(event: dict[str, Any]) -> bytes:
    """An event as an SSE frame, whose `id` (what `Last-Event-ID` sends back) is its place."""
    return b"event: %s\nid: %s\ndata: %s\n\n" % (
        event["type"].encode(),
        position(event).encode(),
        _ENCODER.encode(event),
    )
