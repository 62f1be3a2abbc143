"""`Idempotency-Key` on every write: a retry gets the first answer and nothing runs twice.

The answer is recorded by the store in the same transaction as the write's effect (the
created session, the appended input), so whatever crashes, a retry either finds that answer
or finds no key, meaning no effect happened, and performs the write once. Nothing is ever
left "in progress": a gateway that dies mid-request leaves either a committed effect with
its answer, or nothing.

A keyed write takes the `Keys` dependency first, before the session it writes to: a key
already answered is replayed before anything else is looked at (a retried delete gets its
204, not a 404 for the session it removed). The route hands `keys.keyed(respond)` to its
store write, with `respond` the function it also makes its own answer with. `Keys` takes an
API key; `WorkerKeys`, for the writes a self-hosted worker makes too, also its environment's
key (keys are per tenant either way).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Final, TypeVar

from fastapi import Depends, FastAPI, Request, Response

from gateway._access import Callers, Tenant
from gateway._bodies import raw_body
from gateway._errors import RETRY_AFTER_S, ApiProblem
from gateway._services import Services
from schemas import Crashpoints
from session_store import IdempotentWrite, KeyTaken, Remembered

T = TypeVar("T")

# Where a gateway can be told to kill itself for a drill (`KEEL_CRASH_AT=point[:n]`): before
# a write's effect, after it committed, and with the answer ready but not yet sent.
CRASH_POINTS: Final = frozenset({"before_write", "after_write", "before_answer"})

MAX_KEY_LENGTH: Final = 255


class Idempotency:
    """One write's Idempotency-Key (or none), as its route uses it."""

    def __init__(self, tenant: str, key: str | None, digest: str, crash: Crashpoints) -> None:
        self.tenant = tenant
        self.key = key
        self.digest = digest
        self.crash = crash

    def keyed(self, respond: Callable[[T], Response]) -> IdempotentWrite[T] | None:
        """What the route hands its store write: the key, and how to answer from the
        write's result (`respond`, which the route also uses for its own answer)."""
        if self.key is None:
            return None

        def answer(result: T) -> tuple[int, bytes]:
            response = respond(result)
            return response.status_code, bytes(response.body)

        return IdempotentWrite(
            tenant=self.tenant, key=self.key, request_hash=self.digest, answer=answer
        )

    def wrote(self) -> None:
        """The route's write committed; its answer is not sent yet."""
        self.crash.reach("after_write")


class Replayed(Exception):
    """The request's key was answered before: `response` is that answer, sent again by the
    handler `install_replays` adds (a dependency cannot answer by returning)."""

    def __init__(self, response: Response) -> None:
        super().__init__("an Idempotency-Key answered before")
        self.response = response


def _replay(held: Remembered, digest: str) -> Replayed:
    if held.request_hash != digest:
        raise ApiProblem(422, "this Idempotency-Key came with a different request")
    return Replayed(
        Response(
            held.body or None,
            status_code=held.status,
            media_type="application/json" if held.body else None,
            headers={"Idempotent-Replayed": "true"},
        )
    )


async def _key(request: Request) -> str | None:
    """The header, checked before anything else (even the API key)."""
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ApiProblem(422, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    return key


@contextlib.asynccontextmanager
async def _keyed(
    request: Request, key: str | None, tenant: str, services: Services
) -> AsyncIterator[Idempotency]:
    digest = ""
    if key is not None:
        digest = hashlib.sha256(
            b"%s %s\n%s"
            % (request.method.encode(), request.url.path.encode(), await raw_body(request))
        ).hexdigest()
        held = await services.store.recall(tenant, key)
        if held is not None:
            raise _replay(held, digest)
    services.crash.reach("before_write")
    try:
        yield Idempotency(tenant, key, digest, services.crash)
    except KeyTaken:
        if key is None:
            raise
        # A concurrent request with the key committed first: its answer is ours.
        held = await services.store.recall(tenant, key)
        if held is None:
            raise ApiProblem(
                409,
                "another request with this Idempotency-Key is running; retry",
                retry_after=RETRY_AFTER_S,
            ) from None
        raise _replay(held, digest) from None
    services.crash.reach("before_answer")


async def _idempotency(
    request: Request,
    key: Annotated[str | None, Depends(_key)],
    tenant: Tenant,
    services: Services,
) -> AsyncIterator[Idempotency]:
    async with _keyed(request, key, tenant, services) as keys:
        yield keys


async def _worker_idempotency(
    request: Request,
    key: Annotated[str | None, Depends(_key)],
    caller: Callers,
    services: Services,
) -> AsyncIterator[Idempotency]:
    async with _keyed(request, key, caller.tenant, services) as keys:
        yield keys


# "function": what follows the yield runs once the route has returned its answer, before
# the answer is sent.
Keys = Annotated[Idempotency, Depends(_idempotency, scope="function")]
WorkerKeys = Annotated[Idempotency, Depends(_worker_idempotency, scope="function")]


def install_replays(app: FastAPI) -> None:
    async def replay(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Replayed)
        return exc.response

    app.add_exception_handler(Replayed, replay)
