"""Telling a dead brain from a slow one, so its sessions need not wait out its leases.

Every brain answers on `keel.brains.<id>.alive` and says it is there on `keel.brains.present`
every `PRESENT_EVERY_S`. Every `peer_check_s`, a brain asks each peer it has heard of
whether it is alive. NATS answers "no responders" at once for a brain whose connection is
gone (the server closes a killed process's connection as soon as its socket closes): asked
twice in a row with that answer, the peer is dead, and its leases on sessions still going
end now (`expire_leases_of`), which queues them for any brain. A frozen brain (SIGSTOP, a
long pause) still has its connection: its peers' questions time out, and its sessions wait
for its leases to run out as before. Either way, whoever claims a session raises its epoch,
which fences anything the old owner still tries to write: a peer wrongly thought dead (cut
off from NATS a moment) loses its sessions, never shares them. After its own connection
came back, a brain judges nobody for `RECONNECT_GRACE_S`: a restarted server's clients all
reconnect at once, and none of them is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from schemas import is_valid_id
from session_store import BrainStore, StoreError

log = logging.getLogger("keel.brain")

PRESENCE_SUBJECT: Final = "keel.brains.present"
PRESENT_EVERY_S: Final = 1.0
# A peer not heard from for this long is forgotten (it left; if its connection is gone, it
# was found dead long before).
FORGET_AFTER_S: Final = 30.0
# "No responders" this many times in a row: the peer is dead, not between reconnects.
STRIKES: Final = 2
# After this brain's own connection came back (a NATS server restarted), its peers may still
# be reconnecting: none is judged for this long.
RECONNECT_GRACE_S: Final = 5.0


def alive_subject(brain_id: str) -> str:
    return f"keel.brains.{brain_id}.alive"


class Peers:
    def __init__(
        self,
        brain_id: str,
        nc: NATS,
        store: BrainStore,
        queue: Callable[[str, str], Awaitable[object]],
        check_s: float,
    ) -> None:
        self.brain_id = brain_id
        self._nc = nc
        self._store = store
        # Puts a session on the work queue, saying why.
        self._queue = queue
        self._check_s = check_s
        # Peers by id: when each was last heard saying it is there.
        self.heard: dict[str, float] = {}
        self._strikes: dict[str, int] = {}
        self._reconnects = 0
        self._judge_after = 0.0

    async def start(self) -> None:
        await self._nc.subscribe(alive_subject(self.brain_id), cb=self._answer)
        await self._nc.subscribe(PRESENCE_SUBJECT, cb=self._present)

    async def _answer(self, msg: Msg) -> None:
        await msg.respond(b"")

    async def _present(self, msg: Msg) -> None:
        peer = msg.data.decode(errors="replace")
        if peer == self.brain_id or not is_valid_id(peer):
            return
        new = peer not in self.heard
        self.heard[peer] = time.monotonic()
        if new:
            # A brain just started: it hears of this one now, not a second from now.
            with contextlib.suppress(nats.errors.Error):
                await self._nc.publish(PRESENCE_SUBJECT, self.brain_id.encode())

    async def announce(self) -> None:
        """Say this brain is there, now and then (a peer started later hears it too)."""
        while True:
            try:
                await self._nc.publish(PRESENCE_SUBJECT, self.brain_id.encode())
            except nats.errors.Error as exc:
                log.debug("announcing this brain failed: %r", exc)
            await asyncio.sleep(PRESENT_EVERY_S)

    async def watch(self) -> None:
        """Ask every peer at once whether it is alive, every `check_s` (a frozen one, whose
        question times out, holds up no other); take over from the dead."""
        while True:
            await asyncio.sleep(self._check_s)
            if not self._judging():
                continue
            try:
                await asyncio.gather(*map(self._check, list(self.heard)))
            except Exception as exc:
                # The watch must outlive any fault of NATS's or the store's.
                log.warning("watching the other brains failed: %r", exc)

    def _judging(self) -> bool:
        """Whether peers can be judged now: not while this brain is cut off from NATS, nor
        for a while after it reconnected (its peers may be reconnecting too)."""
        reconnects = int(self._nc.stats["reconnects"])
        if not self._nc.is_connected or reconnects != self._reconnects:
            self._reconnects = reconnects
            self._judge_after = time.monotonic() + RECONNECT_GRACE_S
            self._strikes.clear()
        return time.monotonic() >= self._judge_after

    async def _check(self, peer: str) -> None:
        heard = self.heard.get(peer)
        if heard is None:
            return
        if time.monotonic() - heard > FORGET_AFTER_S:
            self._forget(peer)
        elif not await self._alive(peer):
            await self._take_over_from(peer)

    async def _alive(self, peer: str) -> bool:
        try:
            await self._nc.request(alive_subject(peer), b"", timeout=max(self._check_s, 0.5))
        except nats.errors.NoRespondersError:
            self._strikes[peer] = self._strikes.get(peer, 0) + 1
            return self._strikes[peer] < STRIKES
        except (nats.errors.Error, TimeoutError):
            pass  # slow, frozen, or this brain is cut off: not known dead
        self._strikes.pop(peer, None)
        return True

    async def _take_over_from(self, peer: str) -> None:
        try:
            orphans = await self._store.expire_leases_of(peer)
        except StoreError as exc:
            log.warning("ending the leases of dead brain %s failed: %s", peer, exc)
            return
        self._forget(peer)
        if orphans:
            log.info("brain %s is gone: its %d sessions need a brain", peer, len(orphans))
        for session_id in orphans:
            try:
                await self._queue(session_id, f"brain {peer} died")
            except (nats.errors.Error, TimeoutError) as exc:
                # Its lease has run out: the sweeper queues it anyway.
                log.warning("queueing %s failed: %r", session_id, exc)

    def _forget(self, peer: str) -> None:
        self.heard.pop(peer, None)
        self._strikes.pop(peer, None)
