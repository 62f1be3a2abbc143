"""Snapshots, a second store beside the log: a session's state folded from events 1..seq, as
bytes, one per reducer version (a brain loads the newest, then reads the tail after it).

A snapshot may come in parts: a header (`state`) and parts kept by content (their sha256).
Saving one writes only the parts the session's previous snapshot of that version did not
have and drops those the new one no longer names, so a snapshot costs what changed since the
last, not what it holds. The store knows nothing of what the parts mean.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from sqlalchemy import Connection, delete, insert, select

from session_store._database import SqlDatabase
from session_store._errors import InvalidInput, SessionNotFound
from session_store._records import Snapshot
from session_store._tables import sessions, snapshot_parts, snapshots

DIGEST_BYTES: Final = 32
# A read that met a snapshot being replaced (a part it names already gone) reads again.
READ_ATTEMPTS: Final = 5


class SqlSnapshots(SqlDatabase):
    """The snapshots of the `SessionLog`, over SQL."""

    async def save_snapshot(
        self,
        session_id: str,
        seq: int,
        state: bytes,
        version: int = 1,
        parts: Sequence[bytes] = (),
    ) -> None:
        """Keep `state` (and `parts`, in order) as the fold of events 1..`seq`; replaces
        older snapshots of `version`.

        `version` names the reducer that made it, so a changed reducer never loads a
        snapshot it cannot read: it finds none of its version and replays in full.
        """
        if not isinstance(state, bytes) or not all(isinstance(part, bytes) for part in parts):
            raise InvalidInput("a snapshot's state and parts are bytes")
        # Hashed before the write transaction, which then holds its locks only to write.
        by_digest = {hashlib.sha256(part).digest(): part for part in parts}
        order = b"".join(hashlib.sha256(part).digest() for part in parts) if parts else None
        of_version = (snapshots.c.session_id == session_id, snapshots.c.version == version)
        parts_of_version = (
            snapshot_parts.c.session_id == session_id,
            snapshot_parts.c.version == version,
        )

        def save(conn: Connection) -> None:
            # The session's row, locked: two writers of one session's snapshots (a brain and
            # one it fenced) take turns, so neither drops a part the other's snapshot names.
            head = conn.execute(
                select(sessions.c.head_seq)
                .where(sessions.c.session_id == session_id)
                .with_for_update()
            ).scalar()
            if head is None:
                raise SessionNotFound(session_id)
            if not 1 <= seq <= int(head):
                raise InvalidInput(f"snapshot seq {seq} is outside 1..{head}")
            kept = {
                bytes(row[0])
                for row in conn.execute(select(snapshot_parts.c.digest).where(*parts_of_version))
            }
            new = [digest for digest in by_digest if digest not in kept]
            if new:
                conn.execute(
                    insert(snapshot_parts),
                    [
                        {
                            "session_id": session_id,
                            "version": version,
                            "digest": digest,
                            "data": by_digest[digest],
                        }
                        for digest in new
                    ],
                )
            gone = kept - by_digest.keys()
            if gone:
                conn.execute(
                    delete(snapshot_parts).where(
                        *parts_of_version, snapshot_parts.c.digest.in_(gone)
                    )
                )
            conn.execute(delete(snapshots).where(*of_version))
            conn.execute(
                insert(snapshots),
                {
                    "session_id": session_id,
                    "version": version,
                    "seq": seq,
                    "at": self._clock(),
                    "state": state,
                    "parts": order,
                },
            )

        await self._write(save)

    async def latest_snapshot(self, session_id: str, version: int = 1) -> Snapshot | None:
        query = (
            select(snapshots.c.seq, snapshots.c.state, snapshots.c.parts)
            .where(snapshots.c.session_id == session_id, snapshots.c.version == version)
            .order_by(snapshots.c.seq.desc())
            .limit(1)
        )
        parts_query = select(snapshot_parts.c.digest, snapshot_parts.c.data).where(
            snapshot_parts.c.session_id == session_id, snapshot_parts.c.version == version
        )

        def latest(conn: Connection) -> Snapshot | None:
            for _ in range(READ_ATTEMPTS):
                row = conn.execute(query).first()
                if row is None:
                    return None
                seq, state, order = row[0], bytes(row[1]), row[2]
                if order is None:
                    return Snapshot(session_id=session_id, seq=seq, version=version, state=state)
                stored = {bytes(digest): bytes(data) for digest, data in conn.execute(parts_query)}
                digests = [
                    bytes(order[at : at + DIGEST_BYTES])
                    for at in range(0, len(order), DIGEST_BYTES)
                ]
                if all(digest in stored for digest in digests):
                    return Snapshot(
                        session_id=session_id,
                        seq=seq,
                        version=version,
                        state=state,
                        parts=[stored[digest] for digest in digests],
                    )
                # Parts are kept by content, so any found are right; one missing means the
                # snapshot was replaced between the two reads: the newer one is read.
                conn.rollback()
            # Replaced at every read: no snapshot, and the caller replays the log instead.
            return None

        return await self._read(latest)
