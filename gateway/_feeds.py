"""One reader per live session, shared by every stream of it in this gateway.

Without it, each SSE client read the store on every "the log grew" message and polled it
every second: 500 streams of 100 sessions made 1,000 idle queries a second and five
identical reads per append. A feed reads a session's new events once, keeps the newest of
them (as read, and encoded as keel's SSE frames), and wakes its streams; a stream that is
behind the feed's window (a client resuming from far back) reads the store itself until it
catches up. Streams of another shape (the Managed Agents projection) take the records.

The store stays the only source: a feed learns that the log grew from `keel.log.<session>`
(brains and the gateway publish it after their commits) or, if such a message is lost, from
its own slow poll of the session's head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Final

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from gateway._views import event_view
from schemas import TERMINAL_STATUSES, Recorded, SessionStatus, log_subject
from session_store import SessionNotFound, SessionReader, StoreError

log = logging.getLogger("keel.gateway")

_ENCODER: Final = msgspec.json.Encoder()
# Events read from the store at once, and the frames a feed keeps for streams just behind
# it: at most this many, and this many bytes (an event may be up to 256 KB).
READ_BATCH: Final = 500
KEPT_FRAMES: Final = 1000
KEPT_BYTES: Final = 1_000_000


def sse_frame(record: Recorded) -> bytes:
    """One event as Server-Sent Events: `id` is its seq, so a client can resume after it."""
    body = _ENCODER.encode(event_view(record))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (record.seq, record.type.encode(), body)


class Feed:
    """What this gateway knows of one session's log: the newest frames, the head, and
    whether the session is over and has been quiet since."""

    def __init__(self, store: SessionReader, session_id: str, poll_s: float) -> None:
        self.store = store
        self.session_id = session_id
        self.poll_s = poll_s
        self.seq = 0  # every event up to here has been read into `frames` (or before them)
        self.frames: deque[tuple[int, bytes]] = deque()
        self.records: deque[Recorded] = deque()  # the same events as `frames`, as read
        self.kept_bytes = 0
        self.terminal = False
        # The session was deleted: its log is gone, and nothing more will be read of it.
        self.gone = False
        # When the session was first seen over with nothing new: streams end a poll later,
        # so outcomes a cancelled session records just after are still sent.
        self.quiet_since: float | None = None
        self.streams = 0
        self._grew = asyncio.Event()
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, nc: NATS) -> None:
        async def on_log(_: Msg) -> None:
            self._grew.set()

        self._subscription = await nc.subscribe(log_subject(self.session_id), cb=on_log)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    def frames_after(self, after: int) -> list[tuple[int, bytes]] | None:
        """The kept frames after seq `after`; None when `after` is before the window (read
        the store instead)."""
        if after >= self.seq:
            return []
        if not self.frames or after + 1 < self.frames[0][0]:
            return None
        start = after + 1 - self.frames[0][0]
        return [self.frames[i] for i in range(start, len(self.frames))]

    def records_after(self, after: int) -> list[Recorded] | None:
        """The kept events after seq `after`, as read; None when `after` is before the
        window (read the store instead)."""
        if after >= self.seq:
            return []
        if not self.records or after + 1 < self.records[0].seq:
            return None
        start = after + 1 - self.records[0].seq
        return [self.records[i] for i in range(start, len(self.records))]

    def over_for(self, after: int, now: float) -> bool:
        """A stream that has sent everything up to `after` is done."""
        return (
            self._ready.is_set()
            and self.terminal
            and after >= self.seq
            and self.quiet_since is not None
            and now - self.quiet_since >= self.poll_s
        )

    def next_change(self) -> asyncio.Event:
        """Set when the feed has next looked at the log. Take it before reading the feed, so
        a change while the stream sends is never missed."""
        return self._changed

    async def ready(self) -> None:
        await self._ready.wait()

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._grew.clear()
            try:
                await self._refresh(loop.time())
                # Streams start once the feed knows where the log's head is.
                self._ready.set()
            except SessionNotFound:
                self.gone = True
                self._ready.set()
            except StoreError as exc:
                log.warning("following %s: %s", self.session_id, exc)
            except Exception:
                # A bug here must not end the feed: its streams would wait forever.
                log.exception("following %s failed", self.session_id)
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._grew.wait(), self.poll_s)

    def _keep(self, record: Recorded) -> None:
        frame = sse_frame(record)
        self.frames.append((record.seq, frame))
        self.records.append(record)
        self.kept_bytes += len(frame)
        while len(self.frames) > 1 and (
            len(self.frames) > KEPT_FRAMES or self.kept_bytes > KEPT_BYTES
        ):
            self.kept_bytes -= len(self.frames.popleft()[1])
            self.records.popleft()

    async def _refresh(self, now: float) -> None:
        if not self._ready.is_set():
            # Start at the head: streams behind it read the store themselves.
            info = await self.store.get_session(self.session_id)
            self.seq = info.head_seq
            self.terminal = info.status in TERMINAL_STATUSES
            self.quiet_since = now if self.terminal else None
            return
        while records := await self.store.read(
            self.session_id, after_seq=self.seq, limit=READ_BATCH
        ):
            for record in records:
                self._keep(record)
                # The session row's status is the last status event's, so the log says it.
                if isinstance(record.event, SessionStatus):
                    self.terminal = record.event.status in TERMINAL_STATUSES
            self.seq = records[-1].seq
            self.quiet_since = now if self.terminal else None
            if len(records) < READ_BATCH:
                break


class Feeds:
    """The feeds of this gateway, one per session that has a stream open."""

    def __init__(self, store: SessionReader, nc: NATS, poll_s: float) -> None:
        self.store = store
        self.nc = nc
        self.poll_s = poll_s
        self._feeds: dict[str, Feed] = {}
        self._opening: dict[str, asyncio.Future[Feed]] = {}

    @contextlib.asynccontextmanager
    async def follow(self, session_id: str) -> AsyncIterator[Feed]:
        feed = await self._open(session_id)
        feed.streams += 1
        try:
            await feed.ready()
            yield feed
        finally:
            feed.streams -= 1
            if feed.streams == 0 and self._feeds.get(session_id) is feed:
                del self._feeds[session_id]
                await feed.close()

    async def _open(self, session_id: str) -> Feed:
        if (feed := self._feeds.get(session_id)) is not None:
            return feed
        # Two streams opening at once share one feed (its start awaits NATS).
        if (opening := self._opening.get(session_id)) is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[Feed] = asyncio.get_running_loop().create_future()
        self._opening[session_id] = future
        try:
            feed = Feed(self.store, session_id, self.poll_s)
            await feed.start(self.nc)
            self._feeds[session_id] = feed
            future.set_result(feed)
            return feed
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a waiter that gave up must not warn
            raise
        finally:
            del self._opening[session_id]
