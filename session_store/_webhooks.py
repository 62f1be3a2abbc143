"""Webhooks over SQL: a tenant's endpoint, and how far it has been sent each session's events.

Delivery is from the log, at least once: a cursor per endpoint and session says what was
sent (acknowledged by the receiver), and moves only forward, so whoever sends next resumes
there. One gateway sends to an endpoint at a time, under a lease it renews
(`claim_webhook_endpoints`); one that stops renewing (killed, frozen) is followed by another
once its lease lapses, which may send again what it sent last: receivers dedupe by event id.

The log of a deleted session is gone with it; its `session.deleted` is not: the delete
writes the session's cursor as a tombstone in its own transaction (`record_deletion`).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy import Connection, and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from schemas import new_id
from session_store._database import SqlDatabase
from session_store._records import WebhookBacklog, WebhookEndpoint
from session_store._tables import sessions, webhook_cursors, webhook_endpoints
from session_store._validate import check_id

_TYPES = msgspec.json.Decoder(list[str])


class SqlWebhooks(SqlDatabase):
    """`WebhookEndpoints` and `WebhookDeliveries` over SQL."""

    # -- endpoints (the tenant's API) -------------------------------------------------------

    async def set_webhook_endpoint(
        self, tenant: str, url: str, event_types: Sequence[str], *, new_secret: str
    ) -> WebhookEndpoint:
        """Make the tenant's endpoint (signed with `new_secret`, taking events from now), or
        point the one it has at `url` and `event_types`: that one keeps its id, secret and
        place in every session's events."""
        check_id("tenant", tenant)
        types = msgspec.json.encode(list(event_types)).decode()

        def put(conn: Connection) -> WebhookEndpoint:
            now = self._clock()
            changed = conn.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.tenant == tenant)
                .values(url=url, event_types=types, updated_at=now)
            )
            if changed.rowcount == 0:
                conn.execute(
                    webhook_endpoints.insert().values(
                        tenant=tenant,
                        endpoint_id=new_id("whep"),
                        url=url,
                        secret=new_secret,
                        event_types=types,
                        created_at=now,
                        updated_at=now,
                    )
                )
            endpoint = _endpoint_of(conn, tenant)
            assert endpoint is not None
            return endpoint

        return await self._write(put)

    async def get_webhook_endpoint(self, tenant: str) -> WebhookEndpoint | None:
        return await self._read(lambda conn: _endpoint_of(conn, tenant))

    async def delete_webhook_endpoint(self, tenant: str) -> bool:
        """Remove the tenant's endpoint and where it was in each session (a new one starts
        afresh); False if it had none."""

        def remove(conn: Connection) -> bool:
            endpoint = _endpoint_of(conn, tenant)
            if endpoint is None:
                return False
            conn.execute(
                delete(webhook_cursors).where(webhook_cursors.c.endpoint_id == endpoint.endpoint_id)
            )
            conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.tenant == tenant))
            return True

        return await self._write(remove)

    # -- deliveries (the gateways that send) ------------------------------------------------

    async def claim_webhook_endpoints(
        self, owner: str, ttl: float, limit: int = 100
    ) -> list[WebhookEndpoint]:
        """The endpoints `owner` sends to for the next `ttl` seconds: those it holds
        (renewed first, so a full hand never drops one) and those nobody holds or whose
        holder stopped renewing, `limit` in all. Two owners never hold one at once."""
        check_id("lease owner", owner)
        c = webhook_endpoints.c

        def claim(conn: Connection) -> list[WebhookEndpoint]:
            now = self._clock()
            free = or_(c.lease_owner.is_(None), c.lease_until < now, c.lease_owner == owner)
            rows = (
                conn.execute(
                    select(webhook_endpoints)
                    .where(free)
                    .order_by(case((c.lease_owner == owner, 0), else_=1), c.tenant)
                    .limit(limit)
                    # Another gateway claiming at once skips these instead of waiting on them.
                    .with_for_update(skip_locked=True)
                )
                .mappings()
                .all()
            )
            if rows:
                conn.execute(
                    update(webhook_endpoints)
                    .where(c.tenant.in_([row["tenant"] for row in rows]))
                    .values(lease_owner=owner, lease_until=now + ttl)
                )
            return [_endpoint(row) for row in rows]

        return await self._write(claim)

    async def release_webhook_endpoints(self, owner: str) -> None:
        """Let go of every endpoint `owner` holds, so another gateway takes them at once."""
        c = webhook_endpoints.c
        await self._write(
            lambda conn: conn.execute(
                update(webhook_endpoints)
                .where(c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
        )

    async def webhook_backlog(
        self, endpoint: WebhookEndpoint, limit: int = 100
    ) -> list[WebhookBacklog]:
        """The tenant's sessions with events `endpoint` has not been sent, least recently
        changed first, and its deleted sessions whose `session.deleted` it has not. A
        session untouched since the endpoint was made has nothing for it."""
        s, cursor = sessions.c, webhook_cursors.c
        next_seq = func.coalesce(cursor.next_seq, 1)
        live = (
            select(s.session_id, next_seq, func.coalesce(cursor.next_part, 0), s.head_seq)
            .select_from(
                sessions.outerjoin(
                    webhook_cursors,
                    and_(
                        cursor.endpoint_id == endpoint.endpoint_id,
                        cursor.session_id == s.session_id,
                    ),
                )
            )
            .where(
                s.tenant == endpoint.tenant,
                # A thread's events reach webhooks through its session's log, not its own.
                s.thread_of.is_(None),
                s.head_seq >= next_seq,
                or_(cursor.session_id.is_not(None), s.updated_at >= endpoint.created_at),
            )
            .order_by(s.updated_at)
            .limit(limit)
        )
        gone = (
            select(cursor.session_id, cursor.deleted_at)
            .where(cursor.endpoint_id == endpoint.endpoint_id, cursor.deleted_at.is_not(None))
            .limit(limit)
        )

        def backlog(conn: Connection) -> list[WebhookBacklog]:
            found = [
                WebhookBacklog(session_id=sid, next_seq=seq, next_part=part, head_seq=head)
                for sid, seq, part, head in conn.execute(live)
            ]
            found += [
                WebhookBacklog(session_id=sid, deleted_at=at) for sid, at in conn.execute(gone)
            ]
            return found

        return await self._read(backlog)

    async def advance_webhook_cursor(
        self, endpoint_id: str, session_id: str, next_seq: int, next_part: int
    ) -> None:
        """Record that the endpoint was sent the session's events before part `next_part`
        of event `next_seq`. A cursor never moves back (a sender that lost its lease may
        still report), and an endpoint deleted meanwhile gets none."""

        def advance(conn: Connection) -> None:
            exists = conn.execute(
                select(webhook_endpoints.c.tenant).where(
                    webhook_endpoints.c.endpoint_id == endpoint_id
                )
            ).first()
            if exists is None:
                return
            row = _insert_cursor(
                conn,
                endpoint_id=endpoint_id,
                session_id=session_id,
                next_seq=next_seq,
                next_part=next_part,
            )
            c = webhook_cursors.c
            conn.execute(
                row.on_conflict_do_update(
                    index_elements=[c.endpoint_id, c.session_id],
                    set_={"next_seq": row.excluded.next_seq, "next_part": row.excluded.next_part},
                    where=or_(
                        c.next_seq < row.excluded.next_seq,
                        and_(
                            c.next_seq == row.excluded.next_seq,
                            c.next_part < row.excluded.next_part,
                        ),
                    ),
                )
            )

        await self._write(advance)

    async def forget_webhook_session(self, endpoint_id: str, session_id: str) -> None:
        """The deleted session's `session.deleted` was sent: nothing of it is left to send."""
        c = webhook_cursors.c
        await self._write(
            lambda conn: conn.execute(
                delete(webhook_cursors).where(
                    c.endpoint_id == endpoint_id, c.session_id == session_id
                )
            )
        )


def record_deletion(conn: Connection, tenant: str, session_id: str, at: float) -> None:
    """In a session's delete: if its tenant has an endpoint, leave it `session.deleted` to
    send (the tombstone outlives the log)."""
    endpoint_id = conn.execute(
        select(webhook_endpoints.c.endpoint_id).where(webhook_endpoints.c.tenant == tenant)
    ).scalar()
    if endpoint_id is None:
        return
    row = _insert_cursor(
        conn, endpoint_id=endpoint_id, session_id=session_id, next_seq=1, next_part=0, deleted_at=at
    )
    conn.execute(
        row.on_conflict_do_update(
            index_elements=[webhook_cursors.c.endpoint_id, webhook_cursors.c.session_id],
            set_={"deleted_at": row.excluded.deleted_at},
        )
    )


def _insert_cursor(conn: Connection, **values: object) -> postgresql.Insert | sqlite.Insert:
    """An insert of a cursor row that can say what to do when the row is there already."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(webhook_cursors).values(**values)
    return sqlite.insert(webhook_cursors).values(**values)


def _endpoint_of(conn: Connection, tenant: str) -> WebhookEndpoint | None:
    row = (
        conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.tenant == tenant))
        .mappings()
        .first()
    )
    return None if row is None else _endpoint(row)


def _endpoint(row: object) -> WebhookEndpoint:
    values = dict(row)  # type: ignore[call-overload]
    return WebhookEndpoint(
        endpoint_id=values["endpoint_id"],
        tenant=values["tenant"],
        url=values["url"],
        secret=values["secret"],
        event_types=_TYPES.decode(values["event_types"]),
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )
