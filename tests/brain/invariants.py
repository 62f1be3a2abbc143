"""The invariants of DESIGN.md, asserted on a session's log after a test's run: the checks
are the product's (`drill.check_log`), which `keel drill` runs against a deployment."""

from __future__ import annotations

from drill import check_log
from schemas import Recorded
from session_store import EventStore


async def check_invariants(store: EventStore, session_id: str) -> list[Recorded]:
    """Assert every invariant a drill checks; return the log for further checks."""
    log, violations = await check_log(store, session_id)
    assert not violations, violations
    return log
