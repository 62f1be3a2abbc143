"""Appends to a session's log, a brain's fenced by its lease and the gateway's unfenced user
input (which may carry an Idempotency-Key). They queue for the group commit
(`_group_commit.py`); a batch is judged by `_batch.py` and written here in one transaction:
lock the heads, claim the keys, insert what was accepted, answer its keys. SQLite's backend
writes a batch without keys on a faster path of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection

from schemas import Event
from session_store._batch import PendingAppend, Plan, heads_of, plan_batch
from session_store._database import SqlDatabase, StoreLimits
from session_store._errors import KeyTaken
from session_store._group_commit import GroupCommit
from session_store._idempotency import IdempotentWrite, answer_claimed, claim_keys, unclaim
from session_store._records import Appended
from session_store._statements import INSERT_EVENTS, LOCK_HEADS, UPDATE_HEAD
from session_store._validate import encode_append


class SqlAppends(SqlDatabase):
    """The appends of the `SessionLog` and the `SessionCatalog`, over SQL."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        limits: StoreLimits | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(clock=clock, limits=limits, registry=registry)
        self._group_commit = GroupCommit(self._write_batch, self.health, self.metrics)

    async def close(self) -> None:
        """Finish queued appends, then close every connection."""
        await self._group_commit.drain()
        await super().close()

    async def append(
        self, session_id: str, events: Sequence[Event], expect_seq: int, epoch: int
    ) -> Appended:
        """Append all of `events` or none; only if the head is `expect_seq` and the lease
        epoch is `epoch`. Returns the new head and the events' `at`. Raises Conflict or Fenced
        otherwise."""
        return await self._append(session_id, events, expect_seq, epoch)

    async def append_input(
        self,
        session_id: str,
        events: Sequence[Event],
        expect_seq: int | None = None,
        *,
        keyed: IdempotentWrite[Appended] | None = None,
    ) -> Appended:
        """The unfenced path for user input (the gateway holds no lease). With `keyed`, the
        answer is recorded in the append's transaction (KeyTaken if the key is taken)."""
        return await self._append(session_id, events, expect_seq, None, keyed)

    async def _append(
        self,
        session_id: str,
        events: Sequence[Event],
        expect_seq: int | None,
        epoch: int | None,
        keyed: IdempotentWrite[Appended] | None = None,
    ) -> Appended:
        rows, change = encode_append(events, self.limits.max_event_bytes)
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        pending = PendingAppend(session_id, rows, expect_seq, epoch, future, change, keyed)
        return await self._group_commit.append(pending)

    async def _write_batch(self, batch: list[PendingAppend]) -> Plan:
        """Commit one group of appends in one transaction (a backend may take a faster path)."""
        return await self._write(lambda conn: self._commit_batch(conn, batch))

    def _commit_batch(self, conn: Connection, batch: list[PendingAppend]) -> Plan:
        ids = sorted({pending.session_id for pending in batch})
        heads = heads_of(conn.execute(LOCK_HEADS, {"ids": ids}))
        now = self._clock()
        # Keys first: an append whose key is taken is refused before anything is written.
        keyed = [p for p in batch if p.keyed is not None]
        taken = claim_keys(conn, [p.keyed for p in keyed if p.keyed is not None], now)
        plan = plan_batch(batch, heads, now, refused={id(p) for p in keyed if p.keyed in taken})
        if plan.event_rows:
            conn.execute(INSERT_EVENTS, plan.event_rows)
            conn.execute(UPDATE_HEAD, plan.head_updates())
        for pending, appended in plan.accepted:
            if pending.keyed is not None:
                answer_claimed(conn, pending.keyed, appended)
        unclaim(
            conn,
            [
                p.keyed
                for p, error in plan.rejected
                if p.keyed is not None and not isinstance(error, KeyTaken)
            ],
        )
        return plan
