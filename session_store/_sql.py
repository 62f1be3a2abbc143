"""Sessions and their logs over SQLAlchemy Core, shared by the SQLite and PostgreSQL backends,
as one part per concept, each standing on `SqlDatabase`: the sessions the API serves
(`_sessions.py`), appends and their group commit (`_appends.py`, `_group_commit.py`), reads
of the log (`_reads.py`), leases and timers (`_leases.py`), snapshots (`_snapshots.py`) and
the hash chain's audit (`_verify.py`). Tenancy (API and idempotency keys) is `SqlTenancy`'s;
a backend composes it with this and supplies `SqlDatabase`'s hooks.
"""

from __future__ import annotations

from session_store._appends import SqlAppends
from session_store._leases import SqlLeases
from session_store._reads import SqlLogReader
from session_store._sessions import SqlSessions
from session_store._snapshots import SqlSnapshots
from session_store._verify import SqlVerifier


class SqlSessionStore(SqlSessions, SqlAppends, SqlLogReader, SqlLeases, SqlSnapshots, SqlVerifier):
    """Sessions and their logs: the `SessionLog` and the `SessionCatalog` over SQL."""
