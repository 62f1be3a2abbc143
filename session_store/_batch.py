"""Group commit, the pure half: decide which queued appends of one batch commit.

Appends from many callers are gathered and committed in one transaction (one fsync), so
durability is not weakened while throughput scales. Each append is still judged on its own,
against the head its predecessors in the batch left, so one stale append fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from session_store._errors import Conflict, Fenced, KeyTaken, SessionNotFound, StoreError
from session_store._idempotency import IdempotentWrite
from session_store._projection import NO_CHANGE, Change, SessionRow
from session_store._records import Appended


@dataclass(slots=True)
class PendingAppend:
    session_id: str
    # (type, data) pairs, already validated and encoded.
    rows: list[tuple[str, str]]
    expect_seq: int | None
    # None for the unfenced user-input path.
    epoch: int | None
    future: asyncio.Future[Appended] = field(repr=False)
    # What the events change in the session's row (status, totals).
    change: Change = NO_CHANGE
    # User input sent with an Idempotency-Key: its answer is recorded in the batch's commit.
    keyed: IdempotentWrite[Appended] | None = None


@dataclass(frozen=True, slots=True)
class Head:
    """A session's head as the batch's transaction locked it: the lease epoch that fences
    its appends, and the row they are projected onto."""

    epoch: int
    row: SessionRow


def heads_of(locked: Iterable[Sequence[Any]]) -> dict[str, Head]:
    """The heads from the rows of the head lock: (session_id, head_seq, lease_epoch,
    head_hash, status, status_reason)."""
    return {
        sid: Head(
            epoch,
            SessionRow(
                session_id=sid, head_seq=seq, head_hash=hash_, status=status, status_reason=reason
            ),
        )
        for sid, seq, epoch, hash_, status, reason in locked
    }


@dataclass(slots=True)
class Plan:
    event_rows: list[dict[str, object]] = field(default_factory=list)
    # Per session, its row after the batch's accepted appends; its tally is what they add.
    session_rows: dict[str, SessionRow] = field(default_factory=dict)
    accepted: list[tuple[PendingAppend, Appended]] = field(default_factory=list)
    rejected: list[tuple[PendingAppend, StoreError]] = field(default_factory=list)

    def head_updates(self) -> list[dict[str, Any]]:
        return [row.head_update() for row in self.session_rows.values()]


def plan_batch(
    pending: list[PendingAppend],
    heads: dict[str, Head],
    at: float,
    refused: Set[int] = frozenset(),
) -> Plan:
    """Judge each append in order against the head its predecessors left, and project the
    accepted ones onto their rows. Appends whose `id()` is in `refused` lost their
    Idempotency-Key to another write."""
    plan = Plan()
    for append in pending:
        head = heads.get(append.session_id)
        row = plan.session_rows.get(append.session_id)
        if row is None and head is not None:
            row = head.row
        error = _rejection(append, head, row)
        if id(append) in refused and append.keyed is not None:
            error = KeyTaken(append.keyed.tenant, append.keyed.key)
        if error is not None:
            plan.rejected.append((append, error))
            continue
        assert row is not None
        row, chained = row.project(
            [(type_, at, data) for type_, data in append.rows],
            append.change,
            at=at,
            is_input=append.epoch is None,
        )
        plan.event_rows += chained
        plan.session_rows[append.session_id] = row
        plan.accepted.append((append, Appended(head_seq=row.head_seq, at=at)))
    return plan


def _rejection(
    append: PendingAppend, head: Head | None, row: SessionRow | None
) -> StoreError | None:
    if head is None or row is None:
        return SessionNotFound(append.session_id)
    # Fenced wins over Conflict: a superseded writer must stop, not re-read and retry.
    if append.epoch is not None and append.epoch != head.epoch:
        return Fenced(append.session_id, append.epoch, head.epoch)
    if append.expect_seq is not None and append.expect_seq != row.head_seq:
        return Conflict(append.session_id, append.expect_seq, row.head_seq)
    return None
