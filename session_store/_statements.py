"""The statements of a group commit, written once for every backend.

Built once: SQLAlchemy memoizes a statement's cache key, so the hot path skips rebuilding.
The general path executes them through SQLAlchemy; SQLite's fast path runs the same
statements as SQLite's dialect compiles them (`_sqlite.py`).
"""

from __future__ import annotations

from sqlalchemy import Float, bindparam, case, insert, or_, select, update

from session_store._tables import events, sessions

# Lock the heads of a batch's sessions, in id order so two batches never deadlock.
LOCK_HEADS = (
    select(
        sessions.c.session_id,
        sessions.c.head_seq,
        sessions.c.lease_epoch,
        sessions.c.head_hash,
        sessions.c.status,
        sessions.c.status_reason,
    )
    .where(sessions.c.session_id.in_(bindparam("ids", expanding=True)))
    .order_by(sessions.c.session_id)
    .with_for_update()
)

# The rows of `SessionRow.project`, one per event.
INSERT_EVENTS = insert(events)

# A session's row after the batch: `SessionRow.head_update` gives its parameters.
UPDATE_HEAD = (
    update(sessions)
    .where(sessions.c.session_id == bindparam("sid"))
    .values(
        head_seq=bindparam("head_seq"),
        head_hash=bindparam("head_hash"),
        status=bindparam("status"),
        status_reason=bindparam("status_reason"),
        updated_at=bindparam("updated_at"),
        # Input sets the timer (see `SessionRow.project`) unless an earlier one is set.
        wake_at=case(
            (bindparam("attention_at", type_=Float).is_(None), sessions.c.wake_at),
            (
                or_(
                    sessions.c.wake_at.is_(None),
                    sessions.c.wake_at > bindparam("attention_at", type_=Float),
                ),
                bindparam("attention_at", type_=Float),
            ),
            else_=sessions.c.wake_at,
        ),
        # Totals are added to, not set: see `SessionRow.head_update`.
        input_tokens=sessions.c.input_tokens + bindparam("d_input_tokens"),
        output_tokens=sessions.c.output_tokens + bindparam("d_output_tokens"),
        cache_read_tokens=sessions.c.cache_read_tokens + bindparam("d_cache_read_tokens"),
        cache_write_tokens=sessions.c.cache_write_tokens + bindparam("d_cache_write_tokens"),
        cost_usd=sessions.c.cost_usd + bindparam("d_cost_usd", type_=Float),
        turns=sessions.c.turns + bindparam("d_turns"),
    )
)
