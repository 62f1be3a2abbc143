"""Folding a session's log into its projection, from the nearest place already folded.

A page of events, a send (checked against the calls open at the head) and a stream resumed
from an event all need the projection where the log stood at some seq. Folded from the log's
first event every time, a session's history would be read again for every page and every
send: a list of 10,000 events in pages of 1,000 read the log ten times over. So the gateway
keeps, for the sessions it served lately, a copy of the projection at every `every`-th seq,
and a fold starts from the latest copy at or before where it must begin.

A kept copy never goes stale: the log is append-only, and what a seq holds never changes. A
deleted session's copies are never reached (its reads are a 404 first) and age out.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterable
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Request

from gateway.managed._projection import Projection
from schemas import Recorded
from session_store import SessionReader

READ_BATCH: Final = 1000


class Projections:
    """Copies of sessions' projections at every `every`-th seq; at most `capacity` of them,
    the least recently used session's dropped first."""

    def __init__(self, *, every: int = 500, capacity: int = 20_000) -> None:
        self.every = every
        self.capacity = capacity
        self._kept: OrderedDict[str, list[Projection]] = OrderedDict()
        self._count = 0

    def at_most(self, session_id: str, seq: int) -> Projection:
        """A projection of its own, folded up to a seq no later than `seq`."""
        kept = self._kept.get(session_id)
        if not kept:
            return Projection()
        self._kept.move_to_end(session_id)
        index = bisect.bisect_right([p.seq for p in kept], seq)
        return kept[index - 1].copy() if index else Projection()

    def passed(self, session_id: str, projection: Projection) -> None:
        """Keeps a copy of `projection` if it is at a seq to keep and not kept yet."""
        if projection.seq % self.every:
            return
        kept = self._kept.setdefault(session_id, [])
        self._kept.move_to_end(session_id)
        if kept and kept[-1].seq >= projection.seq:
            return  # folds go forward: anything earlier is kept already
        kept.append(projection.copy())
        self._count += 1
        while self._count > self.capacity and len(self._kept) > 1:
            _, dropped = self._kept.popitem(last=False)
            self._count -= len(dropped)


def install_projections(app: FastAPI) -> None:
    app.state.projections = Projections()


def _projections(request: Request) -> Projections:
    projections: Projections = request.app.state.projections
    return projections


# The app's kept projections, for a route to fold from.
KeptProjections = Annotated[Projections, Depends(_projections)]


async def fold(
    store: SessionReader,
    session_id: str,
    projection: Projection,
    projections: Projections,
    *,
    keep: bool,
    through_seq: int | None = None,
) -> list[dict[str, Any]]:
    """Fold the log past `projection.seq` into it, through `through_seq` (else the head);
    its events if `keep`."""
    out: list[dict[str, Any]] = []
    while through_seq is None or projection.seq < through_seq:
        batch = READ_BATCH if through_seq is None else min(READ_BATCH, through_seq - projection.seq)
        records = await store.read(session_id, after_seq=projection.seq, limit=batch)
        projected = fold_records(records, session_id, projection, projections)
        if keep:
            out.extend(projected)
        if len(records) < batch:
            break
    return out


def fold_records(
    records: Iterable[Recorded],
    session_id: str,
    projection: Projection,
    projections: Projections,
) -> list[dict[str, Any]]:
    """Fold `records`, which continue `projection`, into it; their events."""
    out: list[dict[str, Any]] = []
    for record in records:
        out.extend(projection.project(record))
        projections.passed(session_id, projection)
    return out


async def fold_from_nearest(
    store: SessionReader,
    session_id: str,
    projections: Projections,
    *,
    through_seq: int | None = None,
) -> Projection:
    """The projection of the log through `through_seq` (else the head)."""
    start = projections.at_most(session_id, through_seq if through_seq is not None else 2**63)
    await fold(store, session_id, start, projections, keep=False, through_seq=through_seq)
    return start
