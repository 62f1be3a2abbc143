"""Sessions and their logs over SQLAlchemy Core, shared by the SQLite and PostgreSQL backends:
fenced group commit, composed with the parts already named: the sessions the API serves
(`SqlSessions`), leases and timers (`SqlLeases`), reads of the log (`SqlLogReader`),
snapshots (`SqlSnapshots`) and the hash chain's audit (`SqlVerifier`). Operations run on
`SqlDatabase`; tenancy (API and idempotency keys) is `SqlTenancy`'s, and a backend composes
both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import Connection

from schemas import Event
from session_store._batch import PendingAppend, Plan, heads_of, plan_batch
from session_store._database import StoreLimits
from session_store._errors import KeyTaken
from session_store._group_commit import GroupCommit
from session_store._idempotency import (
    IdempotentWrite,
    answer_claimed,
    claim_keys,
    unclaim,
)
from session_store._leases import SqlLeases
from session_store._reads import SqlLogReader
from session_store._records import Appended
from session_store._sessions import SqlSessions
from session_store._snapshots import SqlSnapshots
from session_store._statements import INSERT_EVENTS, LOCK_HEADS, UPDATE_HEAD
from session_store._validate import encode_append
from session_store._verify import SqlVerifier

T = TypeVar("T")


class SqlSessionStore(SqlSessions, SqlLeases, SqlLogReader, SqlSnapshots, SqlVerifier):
    """Sessions and their logs: the `SessionLog` and the `SessionCatalog` over SQL."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, limits: StoreLimits | None = None
    ) -> None:
        super().__init__(clock=clock, limits=limits)
        self._group_commit = GroupCommit(self._write_batch, self.health)

    async def close(self) -> None:
        """Finish queued appends, then close every connection."""
        await self._group_commit.drain()
        await super().close()

    # -- the log ----------------------------------------------------------------------------

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
