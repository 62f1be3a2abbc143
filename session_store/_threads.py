"""Threads: sessions spawned by another session's call, as sub-agents of it.

A thread is created at most once whoever asks how often: its id is derived from the parent
and the call by the brain, and creating it is create-if-absent in one transaction (the row,
its link to the parent and the top of the tree, its first events). A message between
threads is appended once per sending call: the append is keyed (`_idempotency.py`) by the
sender and its call, so a brain that died after delivering and delivers again gets the
first delivery's answer instead of a second message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import msgspec
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from schemas import Event, SessionCreated
from session_store._appends import SqlAppends
from session_store._errors import InvalidInput, KeyTaken
from session_store._idempotency import IdempotentWrite, recall
from session_store._projection import SessionRow, change_of, session_info
from session_store._reads import require_session
from session_store._records import Appended, SessionInfo
from session_store._sessions import SESSION_COLUMNS, SqlSessions
from session_store._tables import events, sessions
from session_store._validate import check_id, encode_append, encode_checked

_APPENDED: Final = msgspec.json.Decoder(Appended)
_ENCODE: Final = msgspec.json.Encoder()
# Keys of thread deliveries, apart from any a client sends (theirs are its own strings).
_DELIVERY_KEY: Final = "keel-thread-delivery:"


class SqlThreads(SqlSessions, SqlAppends):
    """The `Threads` part of the store over SQL."""

    async def create_thread(
        self, parent_id: str, thread_id: str, created: SessionCreated, first_input: Sequence[Event]
    ) -> SessionInfo:
        """Create thread `thread_id` of `parent_id` (in its tenant, under its tree), starting
        with `created` and `first_input`, unless it exists: then return it as it is."""
        check_id("thread id", thread_id)
        if not isinstance(created, SessionCreated) or created.thread is None:
            raise InvalidInput("a thread starts with a SessionCreated naming its parent")
        rows = [encode_checked(created, self.limits.max_event_bytes)]
        rows += encode_append(first_input, self.limits.max_event_bytes)[0]
        change = change_of([created, *first_input])

        def create(conn: Connection) -> SessionInfo:
            existing = _thread_row(conn, thread_id)
            if existing is not None:
                return existing
            parent = conn.execute(
                select(sessions.c.tenant, sessions.c.thread_of).where(
                    sessions.c.session_id == parent_id
                )
            ).first()
            if parent is None:
                require_session(conn, parent_id)  # raises SessionNotFound
            assert parent is not None
            now = self._clock()
            row, chained = SessionRow(session_id=thread_id).project(
                [(type_, now, data) for type_, data in rows], change, at=now, is_input=True
            )
            values = row.new_row(parent.tenant, now) | {
                "parent_session_id": parent_id,
                "thread_of": parent.thread_of or parent_id,
            }
            conn.execute(insert(sessions), values)
            conn.execute(insert(events), chained)
            created_row = _thread_row(conn, thread_id)
            assert created_row is not None
            return created_row

        try:
            return await self._write(create)
        except IntegrityError:
            # Two creators raced and the other one won: the thread is there, as it made it.
            return await self.get_session(thread_id)

    async def append_once(self, session_id: str, events: Sequence[Event], key: str) -> Appended:
        """Append `events` as input to `session_id` once for `key`: a later call with the
        same key appends nothing and answers what the first one did."""
        tenant = (await self.get_session(session_id)).tenant
        write: IdempotentWrite[Appended] = IdempotentWrite(
            tenant=tenant,
            key=_DELIVERY_KEY + key,
            request_hash=hashlib.sha256(key.encode()).hexdigest(),
            answer=lambda appended: (200, _ENCODE.encode(appended)),
        )
        remembered = await self._read(lambda conn: recall(conn, tenant, write.key))
        if remembered is None:
            try:
                return await self.append_input(session_id, events, keyed=write)
            except KeyTaken:
                remembered = await self._read(lambda conn: recall(conn, tenant, write.key))
        assert remembered is not None, "a taken key has its write's answer"
        return _APPENDED.decode(remembered.body)

    async def list_threads(self, session_id: str) -> list[SessionInfo]:
        """Every thread under `session_id`'s tree, oldest first."""
        query = (
            select(*SESSION_COLUMNS)
            .where(sessions.c.thread_of == session_id)
            .order_by(sessions.c.created_at, sessions.c.session_id)
        )
        return await self._read(
            lambda conn: [session_info(row._mapping) for row in conn.execute(query)]
        )


def _thread_row(conn: Connection, thread_id: str) -> SessionInfo | None:
    row = conn.execute(select(*SESSION_COLUMNS).where(sessions.c.session_id == thread_id)).first()
    return None if row is None else session_info(row._mapping)
