"""Live previews of agent messages, for streams that ask for them (`event_deltas[]`).

A brain publishes a model's text deltas on NATS core as they stream (`keel.deltas.<id>`,
never in the log); a stream that asked for `agent.message` previews turns them into an
`event_start` naming the message to come, then an `event_delta` per piece, and the recorded
`agent.message` with that id closes the preview. Best effort, as the API says: a delta
lost, or one of a response already projected, is dropped; the message carries it all. keel
has no thinking blocks, so an `agent.thinking` preview never starts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from gateway.managed._event_ids import message_id_after
from schemas import ModelDelta, delta_subject

_ENCODER: Final = msgspec.json.Encoder()
_DELTA: Final = msgspec.json.Decoder(ModelDelta)


class Previews:
    """The deltas heard for one stream, until it sends them."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self._pending: list[ModelDelta] = []
        self._started: set[str] = set()

    async def heard(self, msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            self._pending.append(_DELTA.decode(msg.data))
            self.arrived.set()

    def take(self, projected: int, thread_id: str) -> list[bytes]:
        """The frames of the deltas heard since last time, but for those of responses the
        projection (at seq `projected`) is past: their messages have gone out already.
        `thread_id` names the thread whose own log it is ("" for a session's)."""
        self.arrived.clear()
        pending, self._pending = self._pending, []
        frames = []
        for delta in pending:
            if delta.context_seq < projected:
                continue
            message_id = message_id_after(delta.context_seq, thread_id)
            if message_id not in self._started:
                self._started.add(message_id)
                preview = {"type": "agent.message", "id": message_id}
                frames.append(_frame({"type": "event_start", "event": preview}))
            piece = {"type": "text", "text": delta.text}
            fragment = {"type": "content_delta", "index": 0, "content": piece}
            frames.append(
                _frame({"type": "event_delta", "event_id": message_id, "delta": fragment})
            )
        return frames


@contextlib.asynccontextmanager
async def previews_of(nc: NATS, session_id: str, wanted: bool) -> AsyncIterator[Previews | None]:
    """The previews of the session's messages while in the block; None unless `wanted`."""
    if not wanted:
        yield None
        return
    previews = Previews()
    subscription = await nc.subscribe(delta_subject(session_id), cb=previews.heard)
    try:
        yield previews
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


def _frame(event: dict[str, Any]) -> bytes:
    """A preview has no id of its own: it is never replayed, so never resumed after."""
    return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), _ENCODER.encode(event))
