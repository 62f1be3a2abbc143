"""Leases and durable timers over SQL: who drives a session (claim, renew, release, fenced by
a rising epoch), and which sessions need a brain and have none (`sessions_due`, `leases_of`).

A lease's epoch fences appends (`_batch.py` refuses a stale one); a release may leave a timer
(`wake_at`) that makes the session due again without anyone holding it.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import Connection, and_, case, or_, select, update

from schemas import TERMINAL_STATUSES
from session_store._database import SqlDatabase
from session_store._errors import Fenced, LeaseHeld, SessionNotFound
from session_store._records import Lease
from session_store._tables import sessions
from session_store._validate import check_id


class SqlLeases(SqlDatabase):
    """The leases and timers of the `SessionLog`, over SQL."""

    async def claim(self, session_id: str, owner: str, ttl: float) -> Lease:
        """Take the session: raises the epoch, which fences every earlier owner.

        Succeeds when the lease is free, expired, or already `owner`'s (a brain restarted in
        place takes its sessions back at once, without waiting for expiry).
        """
        check_id("lease owner", owner)

        def claim(conn: Connection) -> Lease:
            # Twice: under READ COMMITTED, the owner that held the lease when the update
            # looked may have let go by the time the select looks (then the lease is free).
            for _ in range(2):
                lease = take(conn)
                if lease is not None:
                    return lease
            raise LeaseHeld(session_id, "", 0.0)

        def take(conn: Connection) -> Lease | None:
            now = self._clock()
            until = now + ttl
            row = conn.execute(
                update(sessions)
                .where(
                    sessions.c.session_id == session_id,
                    or_(
                        sessions.c.lease_owner.is_(None),
                        sessions.c.lease_until < now,
                        sessions.c.lease_owner == owner,
                    ),
                )
                .values(
                    lease_owner=owner,
                    lease_epoch=sessions.c.lease_epoch + 1,
                    lease_until=until,
                    wake_at=None,
                )
                .returning(sessions.c.lease_epoch, sessions.c.head_seq)
            ).first()
            if row is None:
                held = conn.execute(
                    select(sessions.c.lease_owner, sessions.c.lease_until).where(
                        sessions.c.session_id == session_id
                    )
                ).first()
                if held is None:
                    raise SessionNotFound(session_id)
                if held[0] is not None and held[1] is not None:
                    raise LeaseHeld(session_id, held[0], held[1])
                return None  # let go meanwhile: take it now
            return Lease(
                session_id=session_id, owner=owner, epoch=row[0], until=until, head_seq=row[1]
            )

        return await self._write(claim)

    async def renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend a lease; raises Fenced if another owner has taken the session since."""

        def renew(conn: Connection) -> Lease:
            until = self._clock() + ttl
            row = conn.execute(
                update(sessions)
                .where(
                    sessions.c.session_id == lease.session_id,
                    sessions.c.lease_epoch == lease.epoch,
                    sessions.c.lease_owner == lease.owner,
                )
                .values(lease_until=until)
                .returning(sessions.c.head_seq)
            ).first()
            if row is None:
                current = conn.execute(
                    select(sessions.c.lease_epoch).where(sessions.c.session_id == lease.session_id)
                ).scalar()
                if current is None:
                    raise SessionNotFound(lease.session_id)
                raise Fenced(lease.session_id, lease.epoch, current)
            return msgspec.structs.replace(lease, until=until, head_seq=row[0])

        return await self._write(renew)

    async def release(
        self, lease: Lease, *, wake_at: float | None = None, seen_seq: int | None = None
    ) -> bool:
        """Give the session up; False (and no change) if the lease was already superseded.

        `wake_at` (unix seconds) leaves a timer: once due, `sessions_due` lists the session
        again, so a wait with a deadline (an approval) never outlives its deadline. With
        `seen_seq` (the last seq the owner read), a log that grew past it is due at once:
        input that arrived while the owner was letting go is never stranded.
        """

        def release(conn: Connection) -> bool:
            due: object = wake_at
            if seen_seq is not None:
                due = case((sessions.c.head_seq > seen_seq, self._clock()), else_=wake_at)
            query = (
                update(sessions)
                .where(
                    sessions.c.session_id == lease.session_id,
                    sessions.c.lease_epoch == lease.epoch,
                )
                .values(lease_owner=None, lease_until=None, wake_at=due)
            )
            return bool(conn.execute(query).rowcount == 1)

        return await self._write(release)

    async def leases_of(self, owner: str) -> list[str]:
        """Non-terminal sessions `owner` holds: a brain restarted in place takes them back at
        once instead of waiting for its old leases to expire."""
        query = select(sessions.c.session_id).where(
            sessions.c.lease_owner == owner, sessions.c.status.not_in(TERMINAL_STATUSES)
        )
        return await self._read(lambda conn: list(conn.execute(query).scalars()))

    async def expire_leases_of(self, owner: str) -> list[str]:
        """End now every lease `owner` holds on a session still going, and list those
        sessions: `owner` is known dead (its brain's NATS connection is gone), so its
        sessions need not wait for its leases to run out. Safe even if it is not: a claim
        raises the epoch, which fences whatever it still tries to write."""
        check_id("lease owner", owner)

        def expire(conn: Connection) -> list[str]:
            now = self._clock()
            query = (
                update(sessions)
                .where(
                    sessions.c.lease_owner == owner,
                    sessions.c.lease_until >= now,
                    sessions.c.status.not_in(TERMINAL_STATUSES),
                )
                .values(lease_until=now - 1.0)
                .returning(sessions.c.session_id)
            )
            return list(conn.execute(query).scalars())

        return await self._write(expire)

    async def sessions_due(self, limit: int = 100) -> list[str]:
        """Non-terminal sessions that need a brain and have none: the owner's lease ran out,
        or a timer left at release is due. The sweeper re-queues them."""

        def due(conn: Connection) -> list[str]:
            now = self._clock()
            live = sessions.c.status.not_in(TERMINAL_STATUSES)
            expired = (
                select(sessions.c.session_id, sessions.c.lease_until.label("due"))
                .where(and_(sessions.c.lease_until < now, sessions.c.lease_owner.is_not(None)))
                .where(live)
            )
            timers = (
                select(sessions.c.session_id, sessions.c.wake_at.label("due"))
                .where(and_(sessions.c.wake_at <= now, sessions.c.lease_owner.is_(None)))
                .where(live)
            )
            query = expired.union_all(timers).order_by("due").limit(limit)
            return [row[0] for row in conn.execute(query)]

        return await self._read(due)
