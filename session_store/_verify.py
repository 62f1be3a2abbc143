"""The audit of a session's log: re-walk its hash chain and name the first seq that was
edited, deleted or moved."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from session_store._database import SqlDatabase
from session_store._errors import SessionNotFound
from session_store._hashing import GENESIS, chain_hash
from session_store._reads import require_session
from session_store._records import Verification
from session_store._tables import events, sessions

_VERIFY_PAGE = 5000


class SqlVerifier(SqlDatabase):
    """The audit of the `SessionCatalog`, over SQL."""

    async def verify(self, session_id: str) -> Verification:
        """Re-walk the hash chain; names the first seq that was edited, deleted or moved."""
        return await self._read(lambda conn: _verify_chain(conn, session_id))


def _verify_chain(conn: Connection, session_id: str) -> Verification:
    head = conn.execute(
        select(sessions.c.head_seq, sessions.c.head_hash).where(sessions.c.session_id == session_id)
    ).first()
    if head is None:
        raise SessionNotFound(session_id)
    head_seq, head_hash = head

    def bad(seq: int, problem: str, checked: int) -> Verification:
        return Verification(
            session_id=session_id,
            ok=False,
            checked=checked,
            head_seq=head_seq,
            bad_seq=seq,
            problem=problem,
        )

    prev = GENESIS
    expected = 1
    while True:
        rows = conn.execute(
            select(events.c.seq, events.c.type, events.c.at, events.c.data, events.c.hash)
            .where(
                events.c.session_id == session_id,
                events.c.seq >= expected,
                events.c.seq <= head_seq,
            )
            .order_by(events.c.seq)
            .limit(_VERIFY_PAGE)
        ).all()
        for seq, type_, at, data, stored in rows:
            if seq != expected:
                return bad(expected, f"seq {expected} is missing", expected - 1)
            # Chained from the previous row's stored hash, so an edited row is named itself
            # and the row after it still verifies.
            if chain_hash(prev, session_id, seq, type_, at, data) != stored:
                return bad(seq, f"seq {seq} does not match its hash: edited or moved", seq - 1)
            prev = bytes(stored)
            expected += 1
        if len(rows) < _VERIFY_PAGE:
            break
    last = expected - 1
    if last < head_seq:
        return bad(expected, f"the log ends at {last} but its head is {head_seq}", last)
    if prev != head_hash:
        return bad(head_seq, "the last event does not match the session's head hash", last)
    # Appends may commit while we walk; they move the head with their rows in one
    # transaction, so reading the highest seq before the head again finds only forged rows.
    highest = conn.execute(
        select(func.max(events.c.seq)).where(events.c.session_id == session_id)
    ).scalar()
    head_now = require_session(conn, session_id)
    if highest is not None and highest > head_now:
        return bad(head_now + 1, f"rows past the head {head_now}", last)
    return Verification(session_id=session_id, ok=True, checked=last, head_seq=head_seq)
