"""A session's log as Server-Sent Events, live.

Each event goes out once, in order, with `id: <seq>`: a client that reconnects with
`Last-Event-ID` gets everything after it, with no gap and no duplicate, whichever gateway it
reaches. The store is the only source: a stream catches up from it, then follows the
session's shared feed (`gateway._feeds`), which reads each new event once for every stream.
Token deltas (never stored, so never replayed) come along only when asked for, without an id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from gateway._feeds import READ_BATCH, Feeds, sse_frame
from schemas import ModelDelta, delta_subject
from session_store import SessionReader

_ENCODER: Final = msgspec.json.Encoder()


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    # A comment line this often keeps proxies from closing an idle stream.
    heartbeat_s: float = 15.0
    # Read the store this often even without a "log grew" message.
    poll_s: float = 1.0


async def event_stream(
    store: SessionReader,
    nc: NATS,
    feeds: Feeds,
    session_id: str,
    after: int,
    *,
    deltas: bool,
    settings: StreamSettings,
) -> AsyncIterator[bytes]:
    pending_deltas: list[ModelDelta] = []
    delta_arrived = asyncio.Event()

    async def on_delta(msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            pending_deltas.append(msgspec.json.decode(msg.data, type=ModelDelta))
            delta_arrived.set()

    subscription = await nc.subscribe(delta_subject(session_id), cb=on_delta) if deltas else None
    try:
        async with feeds.follow(session_id) as feed:
            yield b"retry: 1000\n\n"
            loop = asyncio.get_running_loop()
            last_beat = loop.time()
            while True:
                change = feed.next_change()
                frames = feed.frames_after(after)
                if frames is None:
                    # Behind what the feed keeps (a client resuming from far back).
                    records = await store.read(session_id, after_seq=after, limit=READ_BATCH)
                    frames = [(record.seq, sse_frame(record)) for record in records]
                for seq, frame in frames:
                    yield frame
                    after = seq
                if frames:
                    continue  # more may have come while these were sent
                while pending_deltas:
                    yield b"event: delta\ndata: %s\n\n" % _ENCODER.encode(pending_deltas.pop(0))
                if feed.over_for(after, loop.time()):
                    return
                delta_arrived.clear()
                waits = [asyncio.ensure_future(change.wait())]
                if deltas:
                    waits.append(asyncio.ensure_future(delta_arrived.wait()))
                _, unfinished = await asyncio.wait(
                    waits, timeout=settings.heartbeat_s, return_when=asyncio.FIRST_COMPLETED
                )
                for waiting in unfinished:
                    waiting.cancel()
                if loop.time() - last_beat >= settings.heartbeat_s:
                    last_beat = loop.time()
                    yield b": keep-alive\n\n"
    finally:
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
