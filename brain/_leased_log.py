"""A session's log as one run holds it: the lease, the state folded from the log, fenced
appends.

Every append names the lease epoch, so a brain that lost its lease (paused past it) has every
append refused and stops. What is appended is folded with the `at` the store stamped, so the
state (and every snapshot taken of it) equals a replay of the log, without reading back what
was just written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

import msgspec

from brain._background import spawn
from brain.deps import LogObserver, Nats
from brain.fold import fold, initial_state, replay
from brain.metrics import BrainMetrics
from brain.settings import BrainSettings
from brain.state import STATE_VERSION, decode_state, encode_state_parts
from schemas import AgentSpec, Crashpoints, Event, Recorded, event_type, log_subject
from session_store import Fenced, Lease, SessionLog, StoreUnavailable

logger = logging.getLogger("keel.brain")


class LeasedLog:
    """The session's log as this run holds it: its lease, the state folded so far, and the
    fenced appends that move both on."""

    def __init__(
        self,
        store: SessionLog,
        nc: Nats,
        settings: BrainSettings,
        crash: Crashpoints,
        lease: Lease,
        metrics: BrainMetrics,
        observer: LogObserver | None = None,
    ) -> None:
        self.store: Final = store
        self.nc: Final = nc
        self.settings: Final = settings
        self.crash: Final = crash
        self.session_id: Final = lease.session_id
        self.observer: Final = observer
        self.metrics: Final = metrics
        self.lease = lease
        self.state = initial_state(lease.session_id)
        self.snapshot_seq = 0

    @property
    def spec(self) -> AgentSpec:
        assert self.state.spec is not None
        return self.state.spec

    def terminal(self) -> bool:
        return self.state.status in ("completed", "failed", "cancelled")

    # -- reading ------------------------------------------------------------------------------

    async def load(self) -> None:
        """The newest snapshot, then the events after it."""
        snapshot = await self.store.latest_snapshot(self.session_id, STATE_VERSION)
        if snapshot is not None:
            try:
                self.state = decode_state(snapshot.state, snapshot.parts)
                self.snapshot_seq = snapshot.seq
            except msgspec.DecodeError:
                logger.warning("session %s: unreadable snapshot; replaying", self.session_id)
        await self.catch_up()

    async def catch_up(self) -> None:
        records = await self.store.read(self.session_id, after_seq=self.state.seq)
        replay(records, self.state)
        if self.observer is not None:
            self.observer.saw(self.session_id, self.lease.epoch, records, committed=False)

    # -- writing ------------------------------------------------------------------------------

    async def commit(self, events: Sequence[Event]) -> None:
        """Append `events` in one fenced write, fold them, say the log grew, snapshot every N.
        Raises `Conflict` when someone appended since the state was read (nothing is written)
        and `Fenced` when another run holds the lease."""
        try:
            appended = await self.store.append(
                self.session_id, events, self.state.seq, self.lease.epoch
            )
        except Fenced:
            self.metrics.fenced.labels("append").inc()
            raise
        self.metrics.committed(events)
        records = [
            Recorded(seq=self.state.seq + n, at=appended.at, type=event_type(event), event=event)
            for n, event in enumerate(events, start=1)
        ]
        for recorded in records:
            fold(self.state, recorded)
        if self.observer is not None:
            self.observer.saw(self.session_id, self.lease.epoch, records, committed=True)
        spawn(self.nc.publish(log_subject(self.session_id), b"%d" % appended.head_seq))
        if self.state.seq - self.snapshot_seq >= self.settings.snapshot_every:
            await self._snapshot()

    async def _snapshot(self) -> None:
        header, messages = encode_state_parts(self.state)
        saving = asyncio.ensure_future(
            self.store.save_snapshot(
                self.session_id, self.state.seq, header, STATE_VERSION, parts=messages
            )
        )
        if self.crash.armed("during_snapshot"):
            await asyncio.sleep(0.001)  # the write is under way
        self.crash.reach("during_snapshot")
        await saving
        self.snapshot_seq = self.state.seq

    # -- the lease ----------------------------------------------------------------------------

    async def keep_lease(self, fenced: asyncio.Event) -> None:
        """Renew the lease every third of its period; set `fenced` when another run has it."""
        period = self.settings.lease_s / 3
        while True:
            await asyncio.sleep(period)
            try:
                self.lease = await self.store.renew(self.lease, self.settings.lease_s)
            except Fenced:
                self.metrics.fenced.labels("renew").inc()
                fenced.set()
                return
            except Exception as exc:
                # A passing store fault: try again; if the lease lapses meanwhile, the next
                # renewal or append is refused and the run stops.
                # Quietly in an outage the store has announced itself.
                quiet = isinstance(exc, StoreUnavailable)
                logger.log(
                    logging.DEBUG if quiet else logging.WARNING,
                    "session %s: renewing the lease failed: %s",
                    self.session_id,
                    exc,
                )

    async def release(self, wake_at: float | None) -> bool:
        """Let the session go (False: another run had taken it already)."""
        # With seen_seq, input that came while letting go leaves the session due at once:
        # even if this brain dies right here, the sweeper hands it on.
        return await self.store.release(self.lease, wake_at=wake_at, seen_seq=self.state.seq)

    async def grew(self) -> bool:
        """Was anything appended since this run last read (input while it let go)?"""
        return await self.store.head(self.session_id) > self.state.seq
