"""Snapshots, a second store beside the log: a session's state folded from events 1..seq, as
bytes, one per reducer version (a brain loads the newest, then reads the tail after it)."""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, select

from session_store._database import SqlDatabase
from session_store._errors import InvalidInput
from session_store._reads import require_session
from session_store._records import Snapshot
from session_store._tables import snapshots


class SqlSnapshots(SqlDatabase):
    """The snapshots of the `SessionLog`, over SQL."""

    async def save_snapshot(
        self, session_id: str, seq: int, state: bytes, version: int = 1
    ) -> None:
        """Keep `state` as the fold of events 1..`seq`; replaces older snapshots of `version`.

        `version` names the reducer that made it, so a changed reducer never loads a
        snapshot it cannot read: it finds none of its version and replays in full.
        """
        if not isinstance(state, bytes):
            raise InvalidInput("a snapshot state is bytes")

        def save(conn: Connection) -> None:
            head = require_session(conn, session_id)
            if not 1 <= seq <= head:
                raise InvalidInput(f"snapshot seq {seq} is outside 1..{head}")
            conn.execute(
                delete(snapshots).where(
                    snapshots.c.session_id == session_id, snapshots.c.version == version
                )
            )
            conn.execute(
                insert(snapshots),
                {
                    "session_id": session_id,
                    "version": version,
                    "seq": seq,
                    "at": self._clock(),
                    "state": state,
                },
            )

        await self._write(save)

    async def latest_snapshot(self, session_id: str, version: int = 1) -> Snapshot | None:
        query = (
            select(snapshots.c.seq, snapshots.c.state)
            .where(snapshots.c.session_id == session_id, snapshots.c.version == version)
            .order_by(snapshots.c.seq.desc())
            .limit(1)
        )

        def latest(conn: Connection) -> Snapshot | None:
            row = conn.execute(query).first()
            if row is None:
                return None
            return Snapshot(session_id=session_id, seq=row[0], version=version, state=bytes(row[1]))

        return await self._read(latest)
