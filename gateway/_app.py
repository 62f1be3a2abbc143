"""The HTTP API: sessions and their events under `/v1`, for a tenant named by a bearer key.

Bodies are msgspec Structs (`schemas._api`), decoded here with a size limit; their JSON
Schema is what the served OpenAPI shows. Another tenant's session is a 404, as if it did not
exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Final, TypeVar

import msgspec
import nats.errors
from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import StreamingResponse
from nats.aio.client import Client as NATS

from gateway._errors import ApiProblem, install_error_handlers, json_response
from gateway._feeds import Feeds
from gateway._idempotency import Idempotency
from gateway._metrics import GatewayMetrics, install_metrics
from gateway._openapi import body_of, install_openapi, responds_with, stream_responses
from gateway._stream import StreamSettings, event_stream
from gateway._viewer import install_viewer
from gateway._views import event_view, session_view
from gateway._work import Announcer
from schemas import (
    AUDIT_SUBJECT,
    MAX_JSON_DEPTH,
    MAX_SEQ,
    TERMINAL_STATUSES,
    AuditReply,
    AuditRequest,
    AuditView,
    ChainCheck,
    Crashpoints,
    CreateSession,
    EventPage,
    ForkSession,
    PostedEvents,
    PostEvents,
    SessionCreated,
    SessionList,
    SessionStatus,
    SessionView,
    Status,
    UserMessage,
    nesting_depth,
)
from session_store import Appended, EventStore, SessionInfo, SessionNotFound, StoreError

T = TypeVar("T")

API_DESCRIPTION: Final = """\
Every `/v1` request carries a tenant's API key: `Authorization: Bearer <key>`. Another
tenant's session is a 404, as if it did not exist.

**Retries.** Every write (POST, DELETE) takes an optional `Idempotency-Key` header (1 to 255
characters): a retry with the same key and the same request gets the first answer, marked
`Idempotent-Replayed: true`, and nothing is done twice, whatever crashed in between (the
answer is recorded in the same transaction as the write). Requests with one key sent at
once are done once, and all get that answer. The same key with another request is a 422.
A 409 is final (`x-should-retry: false`); a 503 says when to try again (`Retry-After`).

**Streams.** `GET /v1/sessions/{session_id}/stream` sends the log as Server-Sent Events, each
with `id: <seq>`; reconnect with `Last-Event-ID: <seq>` (or `?after=`) to get everything
after it, with no gap and no duplicate, from any gateway.

**Errors** are always `{"error": {"code", "message"}}`.
"""

_ENCODER: Final = msgspec.json.Encoder()
_AUDIT_REPLY: Final = msgspec.json.Decoder(AuditReply)

# A request body larger than this is refused with 413 before it is decoded.
MAX_BODY_BYTES: Final = 1_000_000
MAX_PAGE: Final = 500
# The latest creation time a list filter takes (unix seconds, year 36812).
MAX_TIME: Final = float(2**40)
# How long an audit waits for a brain to fold the log.
AUDIT_TIMEOUT_S: Final = 30.0
_PAUSABLE: Final = frozenset({"idle", "running", "waiting"})
_PAUSED: Final = frozenset({"paused"})
_CANCELLABLE: Final = frozenset({"idle", "running", "waiting", "paused"})


def create_app(
    store: EventStore,
    nc: NATS,
    *,
    stream: StreamSettings | None = None,
    crash: Crashpoints | None = None,
) -> FastAPI:
    app = FastAPI(
        title="keel",
        version="0.1.0",
        summary="Long-running AI agents on an event-sourced session log.",
        description=API_DESCRIPTION,
    )
    install_error_handlers(app)
    install_openapi(app)
    metrics = install_metrics(app, store, nc)
    access = _Access(store)
    keys = Idempotency(store, access.tenant_of, raw_body, crash or Crashpoints())
    announcer = Announcer(nc)
    _health_routes(app, store, nc)
    _session_routes(app, store, access, keys, announcer)
    _event_routes(app, store, nc, access, keys, announcer, stream or StreamSettings(), metrics)
    _audit_routes(app, store, nc, access)
    install_viewer(app)
    return app


def _health_routes(app: FastAPI, store: EventStore, nc: NATS) -> None:
    @app.get("/healthz", response_class=Response)
    async def healthz() -> Response:
        """The process is up."""
        return Response(b'{"ok":true}', media_type="application/json")

    @app.get(
        "/readyz",
        response_class=Response,
        responses={503: {"description": "the store or NATS does not answer"}},
    )
    async def readyz() -> Response:
        """The store and NATS answer: 200, or 503 naming what does not."""
        problems = []
        try:
            await store.list_sessions("readyz", limit=1)
        except StoreError as exc:
            problems.append(f"store: {exc}")
        if not nc.is_connected:
            problems.append("nats: not connected")
        else:
            try:
                await nc.flush(timeout=2)
            except (nats.errors.Error, TimeoutError) as exc:
                problems.append(f"nats: {exc!r}")
        if problems:
            raise ApiProblem(503, "; ".join(problems))
        return Response(b'{"ok":true}', media_type="application/json")


class _Access:
    """Who is asking (the tenant of the bearer key), and whether the session is theirs."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def tenant_of(self, request: Request) -> str:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiProblem(401, "send your API key as 'Authorization: Bearer <key>'")
        tenant = await self.store.tenant_for_key(key.strip())
        if tenant is None:
            raise ApiProblem(401, "unknown API key")
        return tenant

    async def session_of(self, request: Request, session_id: str) -> SessionInfo:
        tenant = await self.tenant_of(request)
        try:
            info = await self.store.get_session(session_id)
        except SessionNotFound:
            info = None
        if info is None or info.tenant != tenant:
            raise ApiProblem(404, f"no session {session_id!r}")
        return info


def _session_routes(
    app: FastAPI, store: EventStore, access: _Access, keys: Idempotency, announcer: Announcer
) -> None:
    def created(info: SessionInfo) -> Response:
        return json_response(session_view(info), 201)

    def posted(appended: Appended) -> Response:
        return json_response(PostedEvents(head_seq=appended.head_seq), 202)

    def deleted(_: None) -> Response:
        return Response(status_code=204)

    @app.post(
        "/v1/sessions",
        status_code=201,
        openapi_extra=body_of(CreateSession) | responds_with(201, SessionView, write=True),
        response_class=Response,
    )
    @keys.route
    async def create_session(request: Request) -> Response:
        """Create a session that runs `spec`; with `message`, the agent starts at once."""
        tenant = await access.tenant_of(request)
        body = await decode_body(request, CreateSession)
        info = await store.create_session(
            tenant,
            SessionCreated(spec=body.spec, title=body.title, metadata=body.metadata),
            first_input=[UserMessage(text=body.message)] if body.message is not None else (),
            keyed=keys.keyed(request, created),
        )
        keys.wrote()
        if body.message is not None:
            await announcer.announce(info.session_id, "user.message", info.head_seq)
        return created(info)

    @app.get(
        "/v1/sessions",
        openapi_extra=responds_with(200, SessionList),
        response_class=Response,
    )
    async def list_sessions(
        request: Request,
        status: Status | None = None,
        created_after: Annotated[float | None, Query(ge=0, le=MAX_TIME)] = None,
        created_before: Annotated[float | None, Query(ge=0, le=MAX_TIME)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        """The tenant's sessions, newest first: optionally of one status, created at or
        after `created_after` and before `created_before` (unix seconds)."""
        tenant = await access.tenant_of(request)
        page = await store.list_sessions(
            tenant,
            status=status,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )
        return json_response(
            SessionList(
                items=[session_view(info) for info in page.items], next_cursor=page.next_cursor
            )
        )

    @app.post(
        "/v1/sessions/{session_id}/fork",
        status_code=201,
        openapi_extra=body_of(ForkSession) | responds_with(201, SessionView, write=True),
        response_class=Response,
    )
    @keys.route
    async def fork_session(request: Request, session_id: str) -> Response:
        """Time travel: a new session whose log starts as a copy of this one's up to
        `at_seq` (recorded with `session.forked`); this one is left as it is."""
        parent = await access.session_of(request, session_id)
        body = await decode_body(request, ForkSession)
        if body.at_seq > parent.head_seq:
            raise ApiProblem(
                409, f"at_seq {body.at_seq} is past the log's head ({parent.head_seq})"
            )
        child = await store.fork_session(
            session_id, body.at_seq, parent.tenant, keyed=keys.keyed(request, created)
        )
        keys.wrote()
        # The copy may end on input nobody has answered yet.
        await announcer.announce(child.session_id, "forked", child.head_seq)
        return created(child)

    async def change_status(
        request: Request, session_id: str, to: Status, allowed_from: frozenset[str], why: str
    ) -> Response:
        info = await access.session_of(request, session_id)
        if info.status not in allowed_from:
            raise ApiProblem(409, f"the session is {info.status}; it cannot be {why}")
        appended = await store.append_input(
            session_id,
            [SessionStatus(status=to, reason=f"{why} by the user")],
            keyed=keys.keyed(request, posted),
        )
        keys.wrote()
        await announcer.announce(session_id, why, appended.head_seq)
        return posted(appended)

    @app.post(
        "/v1/sessions/{session_id}/pause",
        status_code=202,
        openapi_extra=responds_with(202, PostedEvents, write=True),
        response_class=Response,
    )
    @keys.route
    async def pause(request: Request, session_id: str) -> Response:
        """Stop taking new steps (calls in flight finish and are recorded)."""
        return await change_status(request, session_id, "paused", _PAUSABLE, "paused")

    @app.post(
        "/v1/sessions/{session_id}/resume",
        status_code=202,
        openapi_extra=responds_with(202, PostedEvents, write=True),
        response_class=Response,
    )
    @keys.route
    async def resume(request: Request, session_id: str) -> Response:
        """Carry on from where it paused (a budget or loop guard is cleared too)."""
        return await change_status(request, session_id, "running", _PAUSED, "resumed")

    @app.post(
        "/v1/sessions/{session_id}/cancel",
        status_code=202,
        openapi_extra=responds_with(202, PostedEvents, write=True),
        response_class=Response,
    )
    @keys.route
    async def cancel(request: Request, session_id: str) -> Response:
        """End the session for good: calls not sent never run, calls in flight are stopped,
        and each still gets its one recorded outcome."""
        return await change_status(request, session_id, "cancelled", _CANCELLABLE, "cancelled")

    @app.get(
        "/v1/sessions/{session_id}",
        openapi_extra=responds_with(200, SessionView),
        response_class=Response,
    )
    async def get_session(request: Request, session_id: str) -> Response:
        """Status, head seq, title, metadata, and totals of usage, cost and turns."""
        return json_response(session_view(await access.session_of(request, session_id)))

    @app.delete(
        "/v1/sessions/{session_id}",
        status_code=204,
        response_class=Response,
        openapi_extra=responds_with(204, None, write=True),
    )
    @keys.route
    async def delete_session(request: Request, session_id: str) -> Response:
        """Remove a finished session and its log for good; a session that is not finished
        (or whose brain is still recording its last events) is a 409: cancel it first."""
        await access.session_of(request, session_id)
        await store.delete_session(session_id, keyed=keys.keyed(request, deleted))
        keys.wrote()
        return deleted(None)


def _event_routes(
    app: FastAPI,
    store: EventStore,
    nc: NATS,
    access: _Access,
    keys: Idempotency,
    announcer: Announcer,
    stream: StreamSettings,
    metrics: GatewayMetrics,
) -> None:
    def posted(appended: Appended) -> Response:
        return json_response(PostedEvents(head_seq=appended.head_seq), 202)

    feeds = Feeds(store, nc, stream.poll_s)

    @app.post(
        "/v1/sessions/{session_id}/events",
        status_code=202,
        openapi_extra=body_of(PostEvents) | responds_with(202, PostedEvents, write=True),
        response_class=Response,
    )
    @keys.route
    async def post_events(request: Request, session_id: str) -> Response:
        """Append user input (messages, interrupts, approval decisions), in order; the agent
        takes it up as soon as it can, even while it is busy."""
        info = await access.session_of(request, session_id)
        body = await decode_body(request, PostEvents)
        if info.status in TERMINAL_STATUSES:
            raise ApiProblem(409, f"the session is {info.status}; it takes no more input")
        appended = await store.append_input(
            session_id, body.events, keyed=keys.keyed(request, posted)
        )
        keys.wrote()
        await announcer.announce(session_id, "user input", appended.head_seq)
        return posted(appended)

    @app.get(
        "/v1/sessions/{session_id}/events",
        openapi_extra=responds_with(200, EventPage),
        response_class=Response,
    )
    async def read_events(
        request: Request,
        session_id: str,
        after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response:
        """The log after seq `after`, in order, at most `limit` events."""
        await access.session_of(request, session_id)
        records = await store.read(session_id, after_seq=after, limit=limit)
        items = [event_view(record) for record in records]
        next_after = items[-1].seq if len(items) == limit else None
        return json_response(EventPage(items=items, next_after=next_after))

    @app.get(
        "/v1/sessions/{session_id}/stream",
        response_class=StreamingResponse,
        openapi_extra=stream_responses(),
    )
    async def stream_events(
        request: Request,
        session_id: str,
        after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
        deltas: bool = False,
    ) -> StreamingResponse:
        """The log as Server-Sent Events (`id: <seq>`), then live until the session ends.
        Resume with `Last-Event-ID` (or `after`): no gap, no duplicate. `deltas=true` adds
        the model's text as it streams (`event: delta`, not replayable)."""
        await access.session_of(request, session_id)
        last_event_id = request.headers.get("last-event-id")
        if last_event_id is not None:
            if not last_event_id.isdigit() or int(last_event_id) > MAX_SEQ:
                raise ApiProblem(422, "Last-Event-ID must be the seq of an event")
            after = int(last_event_id)
        return StreamingResponse(
            counted(
                metrics,
                event_stream(
                    store, nc, feeds, session_id, after or 0, deltas=deltas, settings=stream
                ),
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def _audit_routes(app: FastAPI, store: EventStore, nc: NATS, access: _Access) -> None:
    @app.get(
        "/v1/sessions/{session_id}/audit",
        openapi_extra=responds_with(200, AuditView, conflict="`seq` is past the log's head"),
        response_class=Response,
    )
    async def audit(
        request: Request,
        session_id: str,
        seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    ) -> Response:
        """Re-walk the log's hash chain (any edited, deleted or reordered event is named by
        its seq) and show the state a brain folds from events 1..`seq` (default: the head),
        checking that the newest snapshot plus its tail folds to the same."""
        info = await access.session_of(request, session_id)
        if seq is not None and seq > info.head_seq:
            raise ApiProblem(409, f"seq {seq} is past the log's head ({info.head_seq})")
        at_seq = seq or info.head_seq
        verification = await store.verify(session_id)
        chain = ChainCheck(
            **{name: getattr(verification, name) for name in ChainCheck.__struct_fields__}
        )
        folded = await _fold_by_a_brain(nc, AuditRequest(session_id=session_id, at_seq=at_seq))
        return json_response(
            AuditView(
                session_id=session_id,
                chain=chain,
                at_seq=at_seq,
                state=folded.state,
                state_error=folded.error,
                snapshot_seq=folded.snapshot_seq,
                snapshot_matches=folded.snapshot_matches,
            )
        )


async def _fold_by_a_brain(nc: NATS, request: AuditRequest) -> AuditReply:
    """The fold is the brain's (the gateway never imports it): any brain answers."""
    try:
        reply = await nc.request(AUDIT_SUBJECT, _ENCODER.encode(request), timeout=AUDIT_TIMEOUT_S)
    except nats.errors.NoRespondersError:
        return AuditReply(error="no brain is running to fold the log")
    except (nats.errors.Error, TimeoutError) as exc:
        return AuditReply(error=f"no brain answered: {exc!r}")
    try:
        return _AUDIT_REPLY.decode(reply.data)
    except msgspec.DecodeError as exc:
        return AuditReply(error=f"a brain answered with a malformed reply: {exc}")


async def counted(metrics: GatewayMetrics, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    metrics.streams.inc()
    try:
        async for chunk in stream:
            yield chunk
    finally:
        metrics.streams.dec()


async def raw_body(request: Request) -> bytes:
    """The body, read once (kept for whoever asks again), refused past the limit."""
    kept: bytes | None = getattr(request.state, "raw_body", None)
    if kept is not None:
        return kept
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiProblem(413, f"the body is over {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiProblem(413, f"the body is over {MAX_BODY_BYTES} bytes")
    request.state.raw_body = body
    return body


def _whole_as_int(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


# JSON, like the JSON Schema the OpenAPI shows, does not tell 2.0 from 2: a body the strict
# decode refuses is read again with whole floats as ints before it is refused.
_WHOLE_FLOATS: Final = msgspec.json.Decoder(float_hook=_whole_as_int)


async def decode_body(request: Request, kind: type[T]) -> T:
    body = await raw_body(request)
    try:
        decoded = _decode(body, kind)
    except RecursionError as exc:
        raise ApiProblem(422, _TOO_DEEP) from exc
    # Decodable here, but every brain must be able to read it back from the log too.
    if nesting_depth(decoded) > MAX_JSON_DEPTH:
        raise ApiProblem(422, _TOO_DEEP)
    return decoded


_TOO_DEEP: Final = f"the body nests deeper than {MAX_JSON_DEPTH} levels"


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        try:
            return msgspec.convert(_WHOLE_FLOATS.decode(body), type=kind)
        except msgspec.ValidationError:
            raise ApiProblem(422, str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiProblem(422, f"the body is not valid JSON: {exc}") from exc
