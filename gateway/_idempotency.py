"""`Idempotency-Key` on every write: a retry gets the first answer and nothing runs twice.

The answer is recorded by the store in the same transaction as the write's effect (the
created session, the appended input), so whatever crashes, a retry either finds that answer
or finds no key, meaning no effect happened, and performs the write once. Nothing is ever
left "in progress": a gateway that dies mid-request leaves either a committed effect with
its answer, or nothing.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from fastapi import Request, Response

from gateway._errors import RETRY_AFTER_S, ApiProblem
from schemas import Crashpoints
from session_store import IdempotentWrite, KeyTaken, Remembered, Tenancy

T = TypeVar("T")
Route = TypeVar("Route", bound=Callable[..., Awaitable[Response]])

# Where a gateway can be told to kill itself for a drill (`KEEL_CRASH_AT=point[:n]`): before
# a write's effect, after it committed, and with the answer ready but not yet sent.
CRASH_POINTS: Final = frozenset({"before_write", "after_write", "before_answer"})

MAX_KEY_LENGTH: Final = 255


class Idempotency:
    def __init__(
        self,
        store: Tenancy,
        tenant_of: Callable[[Request], Awaitable[str]],
        read_body: Callable[[Request], Awaitable[bytes]],
        crash: Crashpoints,
    ) -> None:
        self.store = store
        self.tenant_of = tenant_of
        self.read_body = read_body
        self.crash = crash

    def route(self, handler: Route) -> Route:
        """Make `handler` a keyed write: it passes `keyed(request, respond)` to its store
        write, and a retry with the same key gets the answer recorded with that write."""

        @functools.wraps(handler)
        async def route(request: Request, *args: Any, **kwargs: Any) -> Response:
            key = request.headers.get("idempotency-key")
            if key is None:
                return await self._run(handler, request, args, kwargs)
            if not 1 <= len(key) <= MAX_KEY_LENGTH:
                raise ApiProblem(422, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
            tenant = await self.tenant_of(request)
            digest = hashlib.sha256(
                b"%s %s\n%s"
                % (
                    request.method.encode(),
                    request.url.path.encode(),
                    await self.read_body(request),
                )
            ).hexdigest()
            held = await self.store.recall(tenant, key)
            if held is not None:
                return _replay(held, digest)
            request.state.idempotency = (tenant, key, digest)
            try:
                return await self._run(handler, request, args, kwargs)
            except KeyTaken:
                # A concurrent request with the key committed first: its answer is ours.
                held = await self.store.recall(tenant, key)
                if held is None:
                    raise ApiProblem(
                        409,
                        "another request with this Idempotency-Key is running; retry",
                        retry_after=RETRY_AFTER_S,
                    ) from None
                return _replay(held, digest)

        return route  # type: ignore[return-value]

    async def _run(
        self, handler: Route, request: Request, args: Any, kwargs: dict[str, Any]
    ) -> Response:
        self.crash.reach("before_write")
        response = await handler(request, *args, **kwargs)
        self.crash.reach("before_answer")
        return response

    def keyed(
        self, request: Request, respond: Callable[[T], Response]
    ) -> IdempotentWrite[T] | None:
        """What a keyed route hands its store write: the key, and how to answer from the
        write's result (`respond`, which the route also uses for its own answer)."""
        taken: tuple[str, str, str] | None = getattr(request.state, "idempotency", None)
        if taken is None:
            return None
        tenant, key, digest = taken

        def answer(result: T) -> tuple[int, bytes]:
            response = respond(result)
            return response.status_code, bytes(response.body)

        return IdempotentWrite(tenant=tenant, key=key, request_hash=digest, answer=answer)

    def wrote(self) -> None:
        """A route's write committed; its answer is not sent yet."""
        self.crash.reach("after_write")


def _replay(held: Remembered, digest: str) -> Response:
    if held.request_hash != digest:
        raise ApiProblem(422, "this Idempotency-Key came with a different request")
    return Response(
        held.body or None,
        status_code=held.status,
        media_type="application/json" if held.body else None,
        headers={"Idempotent-Replayed": "true"},
    )
