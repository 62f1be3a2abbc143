"""The sessions the API serves, as a resource: created with their first input, forked from
another session's log, read, listed per tenant, and deleted once finished. A keyed write
records its Idempotency-Key answer in the transaction of its effect (`_idempotency.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from schemas import (
    TERMINAL_STATUSES,
    WAITING_FOR_TOOLS,
    Event,
    SessionArchived,
    SessionCreated,
    SessionForked,
    SessionUpdated,
    decode_event,
    new_id,
)
from session_store._database import SqlDatabase
from session_store._errors import InvalidInput, SessionBusy, SessionExists, SessionNotFound
from session_store._hashing import chain_hash
from session_store._idempotency import IdempotentWrite, record_answer
from session_store._projection import SessionRow, change_of, session_info
from session_store._reads import require_session
from session_store._records import SessionInfo, SessionPage
from session_store._tables import events, sessions, snapshot_parts, snapshots
from session_store._validate import check_id, encode_append, encode_checked
from session_store._webhooks import record_deletion

SESSION_COLUMNS = (
    sessions.c.session_id,
    sessions.c.tenant,
    sessions.c.created_at,
    sessions.c.updated_at,
    sessions.c.head_seq,
    sessions.c.status,
    sessions.c.status_reason,
    sessions.c.lease_owner,
    sessions.c.lease_epoch,
    sessions.c.lease_until,
    sessions.c.title,
    sessions.c.metadata,
    sessions.c.input_tokens,
    sessions.c.output_tokens,
    sessions.c.cache_read_tokens,
    sessions.c.cache_write_tokens,
    sessions.c.cost_usd,
    sessions.c.turns,
    sessions.c.agent_id,
    sessions.c.agent_version,
    sessions.c.environment_id,
    sessions.c.archived_at,
    sessions.c.parent_session_id,
    sessions.c.thread_of,
)


class SqlSessions(SqlDatabase):
    """The sessions of the `SessionCatalog`, and `get_session`, over SQL."""

    async def create_session(
        self,
        tenant: str,
        created: SessionCreated,
        *,
        session_id: str | None = None,
        first_input: Sequence[Event] = (),
        keyed: IdempotentWrite[SessionInfo] | None = None,
    ) -> SessionInfo:
        """Create a session whose log starts with `created` at seq 1, then `first_input`
        (user input the agent starts on), all in one transaction; with `keyed`, its answer
        is recorded in that transaction too (KeyTaken if the key is another write's)."""
        check_id("tenant", tenant)
        session_id = check_id("session id", new_id("ses") if session_id is None else session_id)
        if not isinstance(created, SessionCreated):
            raise InvalidInput("a session starts with a SessionCreated event")
        rows = [encode_checked(created, self.limits.max_event_bytes)]
        if first_input:
            rows += encode_append(first_input, self.limits.max_event_bytes)[0]
        now = self._clock()
        row, chained = SessionRow(session_id=session_id).project(
            [(type_, now, data) for type_, data in rows],
            change_of([created, *first_input]),
            at=now,
            is_input=bool(first_input),
        )
        info = row.info(tenant, now)

        def create(conn: Connection) -> None:
            conn.execute(insert(sessions), row.new_row(tenant, now))
            conn.execute(insert(events), chained)
            if keyed is not None:
                record_answer(conn, keyed, info, now)

        try:
            await self._write(create)
        except IntegrityError as exc:
            raise SessionExists(session_id) from exc
        return info

    async def fork_session(
        self,
        parent_id: str,
        at_seq: int,
        tenant: str,
        *,
        keyed: IdempotentWrite[SessionInfo] | None = None,
    ) -> SessionInfo:
        """A new session whose log is a copy of `parent_id`'s up to `at_seq` (each event as
        it was, `at` included, chained anew under the new id), then `session.forked`. The
        parent is untouched: time travel without rewriting history."""
        if not isinstance(at_seq, int) or at_seq < 1:
            raise InvalidInput(f"at_seq must be a seq of the parent's log, got {at_seq!r}")
        session_id = new_id("ses")
        forked = SessionForked(parent_session_id=parent_id, at_seq=at_seq)
        forked_type, forked_data = encode_checked(forked, self.limits.max_event_bytes)

        def fork(conn: Connection) -> SessionInfo:
            head = require_session(conn, parent_id)
            if at_seq > head:
                raise InvalidInput(f"at_seq {at_seq} is past the parent's head ({head})")
            rows = conn.execute(
                select(events.c.type, events.c.at, events.c.data)
                .where(events.c.session_id == parent_id, events.c.seq <= at_seq)
                .order_by(events.c.seq)
            ).all()
            now = self._clock()
            change = change_of([*(decode_event(type_, data) for type_, _, data in rows), forked])
            row, copied = SessionRow(session_id=session_id).project(
                [*rows, (forked_type, now, forked_data)], change, at=now
            )
            row = row.forked(parent_id, at_seq)
            conn.execute(insert(sessions), row.new_row(tenant, now))
            conn.execute(insert(events), copied)
            info = row.info(tenant, now)
            if keyed is not None:
                record_answer(conn, keyed, info, now)
            return info

        return await self._write(fork)

    async def get_session(self, session_id: str) -> SessionInfo:
        query = select(*SESSION_COLUMNS).where(sessions.c.session_id == session_id)

        def get(conn: Connection) -> SessionInfo:
            row = conn.execute(query).first()
            if row is None:
                raise SessionNotFound(session_id)
            return session_info(row._mapping)

        return await self._read(get)

    async def list_sessions(
        self,
        tenant: str,
        *,
        status: str | None = None,
        statuses: Sequence[str] = (),
        created_after: float | None = None,
        created_before: float | None = None,
        agent_id: str | None = None,
        agent_version: int | None = None,
        made_from_agents: bool = False,
        include_archived: bool = True,
        oldest_first: bool = False,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """A tenant's sessions, newest first (or `oldest_first`), optionally of one status
        (or any of `statuses`), created in [`created_after`, `created_before`), made from an
        agent (and version), or from any agent (`made_from_agents`), archived ones too unless
        told not; `cursor` is the previous page's `next_cursor`."""
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be 1..1000, got {limit}")
        c = sessions.c
        # A thread is listed under its session (`list_threads`), not as one of its own.
        query = select(*SESSION_COLUMNS).where(c.tenant == tenant, c.thread_of.is_(None))
        if status is not None:
            query = query.where(c.status == status)
        if statuses:
            query = query.where(c.status.in_(list(statuses)))
        if created_after is not None:
            query = query.where(c.created_at >= created_after)
        if created_before is not None:
            query = query.where(c.created_at < created_before)
        if agent_id is not None:
            query = query.where(c.agent_id == agent_id)
        if agent_version is not None:
            query = query.where(c.agent_version == agent_version)
        if made_from_agents:
            query = query.where(c.agent_id.is_not(None))
        if not include_archived:
            query = query.where(c.archived_at.is_(None))
        if cursor is not None:
            query = query.where(c.session_id > cursor if oldest_first else c.session_id < cursor)
        order = c.session_id.asc() if oldest_first else c.session_id.desc()
        query = query.order_by(order).limit(limit + 1)

        def page(conn: Connection) -> SessionPage:
            rows = conn.execute(query).all()
            items = [session_info(row._mapping) for row in rows[:limit]]
            more = len(rows) > limit
            return SessionPage(items=items, next_cursor=items[-1].session_id if more else None)

        return await self._read(page)

    async def delete_session(
        self,
        session_id: str,
        *,
        unless_running: bool = False,
        keyed: IdempotentWrite[None] | None = None,
    ) -> None:
        """Remove a finished session: its log, snapshots and row, in one transaction, which
        also leaves its tenant's webhook endpoint `session.deleted` to send.

        Refused (SessionBusy) while it is not terminal (`unless_running`: while it is
        running, or waiting on its tools), or while a brain still holds its lease: a
        cancelled session's brain may still be recording its calls' outcomes."""

        def remove(conn: Connection) -> None:
            row = conn.execute(
                select(
                    sessions.c.status,
                    sessions.c.status_reason,
                    sessions.c.lease_owner,
                    sessions.c.lease_until,
                    sessions.c.tenant,
                )
                .where(sessions.c.session_id == session_id)
                .with_for_update()
            ).first()
            if row is None:
                raise SessionNotFound(session_id)
            status, reason, owner, until, tenant = row
            if unless_running:
                if status == "running" or (status == "waiting" and reason == WAITING_FOR_TOOLS):
                    raise SessionBusy(session_id, f"it is {status} (interrupt it first)")
            elif status not in TERMINAL_STATUSES:
                raise SessionBusy(session_id, f"it is {status} (only a finished session can be)")
            if owner is not None and until is not None and until > self._clock():
                raise SessionBusy(
                    session_id, "a brain is still recording its last events", passing=True
                )
            conn.execute(delete(events).where(events.c.session_id == session_id))
            conn.execute(delete(snapshots).where(snapshots.c.session_id == session_id))
            conn.execute(delete(snapshot_parts).where(snapshot_parts.c.session_id == session_id))
            conn.execute(delete(sessions).where(sessions.c.session_id == session_id))
            now = self._clock()
            record_deletion(conn, tenant, session_id, now)
            if keyed is not None:
                record_answer(conn, keyed, None, now)

        await self._write(remove)

    async def amend_session(
        self,
        session_id: str,
        event: SessionUpdated | SessionArchived,
        *,
        keyed: IdempotentWrite[SessionInfo] | None = None,
    ) -> SessionInfo:
        """Record a change of title or metadata, or the archiving, in the log and on the
        row, in one transaction (the row's title, metadata and archive time are what the
        API lists by)."""
        if not isinstance(event, SessionUpdated | SessionArchived):
            raise InvalidInput("only session.updated and session.archived amend a session")
        type_, data = encode_checked(event, self.limits.max_event_bytes)

        def amend(conn: Connection) -> SessionInfo:
            current = conn.execute(
                select(*SESSION_COLUMNS, sessions.c.head_hash)
                .where(sessions.c.session_id == session_id)
                .with_for_update()
            ).first()
            if current is None:
                raise SessionNotFound(session_id)
            info = session_info(current._mapping)
            now = self._clock()
            seq = info.head_seq + 1
            hash_ = chain_hash(current.head_hash, session_id, seq, type_, now, data)
            conn.execute(
                insert(events),
                {
                    "session_id": session_id,
                    "seq": seq,
                    "type": type_,
                    "at": now,
                    "data": data,
                    "hash": hash_,
                },
            )
            changes: dict[str, object] = {"head_seq": seq, "head_hash": hash_, "updated_at": now}
            if isinstance(event, SessionArchived):
                changes["archived_at"] = info.archived_at or now
            if isinstance(event, SessionUpdated) and event.title is not None:
                changes["title"] = event.title
            if isinstance(event, SessionUpdated) and event.metadata is not None:
                changes["metadata"] = msgspec.json.encode(event.metadata).decode()
            conn.execute(
                update(sessions).where(sessions.c.session_id == session_id).values(**changes)
            )
            amended = session_info({**current._mapping, **changes})
            if keyed is not None:
                record_answer(conn, keyed, amended, now)
            return amended

        return await self._write(amend)
