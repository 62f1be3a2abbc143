"""What the parts of a hands host do alike on NATS: keep at a write however long NATS is
away, and answer a request that may want no answer."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from schemas import Backoff, retrying

T = TypeVar("T")

# An outcome (and what it names: a blob, a checkpoint) is stored until NATS has it, however
# long NATS is away.
PUBLISH_BACKOFF: Final = Backoff(attempts=None, first_s=0.05, max_s=2.0, jitter_s=0.05, factor=2.0)

_ENCODER: Final = msgspec.json.Encoder()


async def until_nats_has_it(nc: NATS, what: str, write: Callable[[], Awaitable[T]]) -> T:
    """`await write()` until it works: a write NATS misses is tried again, never dropped
    for a passing fault."""
    return await retrying(
        PUBLISH_BACKOFF,
        write,
        lambda exc: isinstance(exc, nats.errors.Error | TimeoutError),
        what=what,
        # While the link is down, its loss was logged once (NatsLinkLog).
        quiet=lambda _: not nc.is_connected,
    )


async def respond(msg: Msg, body: msgspec.Struct | bytes) -> None:
    """Answer `msg` if it asked for an answer; one lost with the link is not worth a fault."""
    if msg.reply:
        data = body if isinstance(body, bytes) else _ENCODER.encode(body)
        with contextlib.suppress(nats.errors.Error):
            await msg.respond(data)
