"""Which spans a live brain exports, as it sees a session's events.

A brain sees the events its runs read (at wake, after a conflict) and commit, each batch
with the lease epoch of the run. It keeps a `SessionProjector` per session and exports:

- the spans closed by events a run commits;
- the spans closed by events a run reads, when this brain held the session's previous
  lease too (the epoch rose by at most one since it last saw the session): those events
  were appended by the gateway meanwhile (an approval, a client's result, a cancel), and
  no other brain has seen them. Every run reads at its start, if only nothing, so a run
  that found nothing to do still counts as this brain's.

Events it has not seen (a session new to this brain, or one another brain drove since)
are read from the store and fed without exporting what they close: another brain did, or
it died first, and then `keel trace` makes up for it. So a span is exported at most once,
and the live spans are a subset of `keel trace`'s, equal to it when no brain died.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Final, Protocol

import msgspec

from schemas import TERMINAL_STATUSES, Recorded
from traces._projector import SessionProjector
from traces._spans import Span

# Events per read when catching up with a log.
PAGE: Final = 500


class LogReader(Protocol):
    """What following a log needs of the store (the brain's store offers it)."""

    async def read(
        self,
        session_id: str,
        after_seq: int = 0,
        limit: int | None = None,
        *,
        types: Collection[str] | None = None,
    ) -> list[Recorded]: ...


class _Followed(msgspec.Struct, kw_only=True):
    projector: SessionProjector
    epoch: int


class LogFollower:
    def __init__(self, reader: LogReader, export: Callable[[Span], None]) -> None:
        self._reader: Final = reader
        self._export: Final = export
        self._sessions: dict[str, _Followed] = {}

    def following(self) -> int:
        return len(self._sessions)

    def forget(self, session_id: str) -> None:
        """Start over with the session (its next events rebuild it from the log)."""
        self._sessions.pop(session_id, None)

    async def saw(
        self, session_id: str, epoch: int, records: Sequence[Recorded], *, committed: bool
    ) -> None:
        followed = self._sessions.get(session_id)
        held_before = followed is not None and epoch <= followed.epoch + 1
        if followed is None:
            if not records:
                return  # nothing known of it yet, nothing to keep
            followed = _Followed(projector=SessionProjector(session_id), epoch=epoch)
        projector = followed.projector
        if records and records[0].seq > projector.seq + 1:
            await self._catch_up(projector, records[0].seq - 1, export=held_before)
        for recorded in records:
            self._feed(projector, recorded, export=committed or held_before)
        followed.epoch = epoch
        if projector.status in TERMINAL_STATUSES and not projector.open_spans():
            self._sessions.pop(session_id, None)
        else:
            self._sessions[session_id] = followed

    async def _catch_up(self, projector: SessionProjector, up_to: int, *, export: bool) -> None:
        while projector.seq < up_to:
            after = projector.seq
            page = await self._reader.read(
                projector.session_id, after_seq=after, limit=min(PAGE, up_to - after)
            )
            if not page:
                return
            for recorded in page:
                self._feed(projector, recorded, export=export)

    def _feed(self, projector: SessionProjector, recorded: Recorded, *, export: bool) -> None:
        for span in projector.feed(recorded):
            if export:
                self._export(span)
