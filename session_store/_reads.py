"""Reads of a session's log: its events in order, after a seq, and its head."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, select

from schemas import Recorded, decode_event
from session_store._database import SqlDatabase
from session_store._errors import SessionNotFound
from session_store._tables import events, sessions


class SqlLogReader(SqlDatabase):
    """The log as `SessionReader` and `SessionLog` read it, over SQL."""

    async def read(
        self,
        session_id: str,
        after_seq: int = 0,
        limit: int | None = None,
        *,
        types: Collection[str] | None = None,
    ) -> list[Recorded]:
        """Events with seq > `after_seq`, in order, at most `limit` of them; only those of
        `types` when given (the others are never decoded)."""
        query = (
            select(events.c.seq, events.c.type, events.c.at, events.c.data)
            .where(events.c.session_id == session_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
        )
        if types is not None:
            query = query.where(events.c.type.in_(sorted(types)))
        if limit is not None:
            query = query.limit(limit)

        def read(conn: Connection) -> list[Recorded]:
            rows = conn.execute(query).all()
            if not rows:
                require_session(conn, session_id)
            return [
                Recorded(seq=seq, at=at, type=type_, event=decode_event(type_, data))
                for seq, type_, at, data in rows
            ]

        return await self._read(read)

    async def head(self, session_id: str) -> int:
        return await self._read(lambda conn: require_session(conn, session_id))


def require_session(conn: Connection, session_id: str) -> int:
    """The head seq of `session_id`; SessionNotFound if there is no such session."""
    head = conn.execute(
        select(sessions.c.head_seq).where(sessions.c.session_id == session_id)
    ).scalar()
    if head is None:
        raise SessionNotFound(session_id)
    return int(head)
