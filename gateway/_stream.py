"""A session's log as Server-Sent Events, live.

Each event goes out once, in order, with `id: <seq>`: a client that reconnects with
`Last-Event-ID` gets everything after it, with no gap and no duplicate, whichever gateway it
reaches. The store is the only source: a writer's "the log grew" message on NATS
(`keel.log.<session>`) only says when to read it again, and a slow poll covers a lost one.
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

from gateway._views import event_view
from schemas import TERMINAL_STATUSES, ModelDelta, delta_subject, log_subject
from session_store import EventStore

_ENCODER: Final = msgspec.json.Encoder()
_BATCH: Final = 500


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    # A comment line this often keeps proxies from closing an idle stream.
    heartbeat_s: float = 15.0
    # Read the store this often even without a "log grew" message.
    poll_s: float = 1.0


async def event_stream(
    store: EventStore,
    nc: NATS,
    session_id: str,
    after: int,
    *,
    deltas: bool,
    settings: StreamSettings,
) -> AsyncIterator[bytes]:
    wake = asyncio.Event()
    pending_deltas: list[ModelDelta] = []

    async def on_log(_: Msg) -> None:
        wake.set()

    async def on_delta(msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            pending_deltas.append(msgspec.json.decode(msg.data, type=ModelDelta))
            wake.set()

    subscriptions = [await nc.subscribe(log_subject(session_id), cb=on_log)]
    if deltas:
        subscriptions.append(await nc.subscribe(delta_subject(session_id), cb=on_delta))
    try:
        yield b"retry: 1000\n\n"
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        quiet_since: float | None = None
        while True:
            wake.clear()
            records = await store.read(session_id, after_seq=after, limit=_BATCH)
            for record in records:
                body = _ENCODER.encode(event_view(record))
                yield b"id: %d\nevent: %s\ndata: %s\n\n" % (
                    record.seq,
                    record.type.encode(),
                    body,
                )
                after = record.seq
            if len(records) == _BATCH:
                continue  # more to catch up on before waiting
            while pending_deltas:
                delta = pending_deltas.pop(0)
                yield b"event: delta\ndata: %s\n\n" % _ENCODER.encode(delta)
            if records:
                quiet_since = None
            elif (await store.get_session(session_id)).status in TERMINAL_STATUSES:
                # Over, and the client has all of it. A cancelled session may still record
                # its calls' outcomes just after: end once it has been quiet for a while.
                quiet_since = quiet_since or loop.time()
                if loop.time() - quiet_since >= settings.poll_s:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), settings.poll_s)
            if loop.time() - last_beat >= settings.heartbeat_s:
                last_beat = loop.time()
                yield b": keep-alive\n\n"
    finally:
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
