"""Streams of one session share one reader: each still gets every event once, in order,
whether it starts at the head, a little behind, or further back than the feed keeps."""

from __future__ import annotations

import asyncio

import httpx2
import nats

from gateway._feeds import KEPT_FRAMES, Feed
from schemas import Recorded, SessionStatus, UserMessage, log_subject
from session_store import EventStore
from tests.gateway.sse import sse
from tests.gateway.test_api import SPEC
from tests.nats_server import NatsServer


async def test_streams_from_anywhere_see_each_event_once(
    client: httpx2.AsyncClient, store: EventStore, nats_server: NatsServer
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    for start in range(0, KEPT_FRAMES + 200, 100):
        await store.append_input(
            session_id, [UserMessage(text=f"m{start + i}") for i in range(100)]
        )
    head = await store.head(session_id)
    url = f"/v1/sessions/{session_id}/stream"
    starts = [0, 5, head - 3, head, head]

    async def watch(after: int) -> list[int]:
        async with client.stream("GET", url, headers={"last-event-id": str(after)}) as live:
            return [int(event["id"]) for event in await sse(live)]

    watching = [asyncio.create_task(watch(after)) for after in starts]
    await asyncio.sleep(0.5)  # every stream is open and following
    # A writer that says "the log grew", as brains do; then the session ends.
    nc = await nats.connect(nats_server.url)
    try:
        for i in range(KEPT_FRAMES + 50):  # more than the feed keeps, while they watch
            appended = await store.append_input(session_id, [UserMessage(text=f"live {i}")])
            if i % 100 == 0:
                await nc.publish(log_subject(session_id), b"%d" % appended.head_seq)
        done = await store.append_input(session_id, [SessionStatus(status="completed")])
        await nc.publish(log_subject(session_id), b"%d" % done.head_seq)
    finally:
        await nc.drain()
    seen = await asyncio.wait_for(asyncio.gather(*watching), timeout=60)
    for after, seqs in zip(starts, seen, strict=True):
        assert seqs == list(range(after + 1, done.head_seq + 1)), after


async def test_a_feed_keeps_a_bounded_number_of_bytes_and_streams_still_see_everything(
    client: httpx2.AsyncClient, store: EventStore, nats_server: NatsServer
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    url = f"/v1/sessions/{session_id}/stream"

    async def watch(after: int) -> list[int]:
        async with client.stream("GET", url, headers={"last-event-id": str(after)}) as live:
            return [int(event["id"]) for event in await sse(live)]

    watching = [asyncio.create_task(watch(after)) for after in (0, 1)]
    await asyncio.sleep(0.5)
    big = "x" * 200_000  # eight of these are more than a feed keeps
    nc = await nats.connect(nats_server.url)
    try:
        for _ in range(8):
            await store.append_input(session_id, [UserMessage(text=big)])
        done = await store.append_input(session_id, [SessionStatus(status="completed")])
        await nc.publish(log_subject(session_id), b"%d" % done.head_seq)
    finally:
        await nc.drain()
    seen = await asyncio.wait_for(asyncio.gather(*watching), timeout=60)
    assert seen == [list(range(1, done.head_seq + 1)), list(range(2, done.head_seq + 1))]
    # One joining now is behind what the feed kept: it reads the store, then follows.
    assert await watch(1) == list(range(2, done.head_seq + 1))


def test_a_feed_keeps_the_events_it_read_beside_their_frames_through_eviction() -> None:
    # Managed Agents streams project the feed's records; keel's streams send its frames:
    # both windows must hold the same events, or one kind of stream would skip some.
    feed = Feed(store=None, session_id="s", poll_s=1.0)  # type: ignore[arg-type]
    for seq in range(1, KEPT_FRAMES + 11):
        feed._keep(Recorded(seq=seq, at=0.0, type="user.message", event=UserMessage(text="m")))
        feed.seq = seq
    frames, records = feed.frames_after(10), feed.records_after(10)
    assert frames is not None and records is not None
    assert [seq for seq, _ in frames] == [r.seq for r in records] == list(range(11, feed.seq + 1))
    assert feed.records_after(9) is None  # before the window: read the store
    assert feed.records_after(feed.seq) == []
