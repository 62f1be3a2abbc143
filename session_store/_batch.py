"""Group commit, the pure half: decide which queued appends of one batch commit.

Appends from many callers are gathered and committed in one transaction (one fsync), so
durability is not weakened while throughput scales. Each append is still judged on its own,
against the head its predecessors in the batch left, so one stale append fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Final

import msgspec

from schemas import Usage
from session_store._errors import Conflict, Fenced, KeyTaken, SessionNotFound, StoreError
from session_store._hashing import chain_hash
from session_store._idempotency import IdempotentWrite
from session_store._records import Appended

# How long input may wait for a brain before the sweeper gives it to one.
INPUT_GRACE_S: Final = 1.0


class Tally(msgspec.Struct, frozen=True):
    """What an append adds to its session's running totals (from its model responses)."""

    usage: Usage = Usage()
    cost_usd: float = 0.0
    turns: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            usage=self.usage + other.usage,
            cost_usd=self.cost_usd + other.cost_usd,
            turns=self.turns + other.turns,
        )

    def row(self) -> dict[str, object]:
        """As the head update's bind parameters (added to the columns, not set)."""
        return {
            "d_input_tokens": self.usage.input_tokens,
            "d_output_tokens": self.usage.output_tokens,
            "d_cache_read_tokens": self.usage.cache_read_tokens,
            "d_cache_write_tokens": self.usage.cache_write_tokens,
            "d_cost_usd": self.cost_usd,
            "d_turns": self.turns,
        }


NO_TALLY: Final = Tally()


@dataclass(slots=True)
class PendingAppend:
    session_id: str
    # (type, data) pairs, already validated and encoded.
    rows: list[tuple[str, str]]
    expect_seq: int | None
    # None for the unfenced user-input path.
    epoch: int | None
    # The last session.status carried by the append, as (status, reason).
    status: tuple[str, str] | None
    future: asyncio.Future[Appended] = field(repr=False)
    tally: Tally = NO_TALLY
    # User input sent with an Idempotency-Key: its answer is recorded in the batch's commit.
    keyed: IdempotentWrite[Appended] | None = None


@dataclass(slots=True)
class Head:
    seq: int
    epoch: int
    hash: bytes
    status: str
    status_reason: str


@dataclass(slots=True)
class Plan:
    event_rows: list[dict[str, object]] = field(default_factory=list)
    session_rows: dict[str, dict[str, object]] = field(default_factory=dict)
    # Per session, the sum of its accepted appends' tallies in this batch.
    tallies: dict[str, Tally] = field(default_factory=dict)
    accepted: list[tuple[PendingAppend, Appended]] = field(default_factory=list)
    rejected: list[tuple[PendingAppend, StoreError]] = field(default_factory=list)


def plan_batch(
    pending: list[PendingAppend],
    heads: dict[str, Head],
    at: float,
    refused: Set[int] = frozenset(),
) -> Plan:
    """Judge each append in order against the running heads; `heads` is updated in place.
    Appends whose `id()` is in `refused` lost their Idempotency-Key to another write."""
    plan = Plan()
    for append in pending:
        head = heads.get(append.session_id)
        error = _rejection(append, head)
        if id(append) in refused and append.keyed is not None:
            error = KeyTaken(append.keyed.tenant, append.keyed.key)
        if error is not None:
            plan.rejected.append((append, error))
            continue
        assert head is not None
        for type_, data in append.rows:
            head.seq += 1
            head.hash = chain_hash(head.hash, append.session_id, head.seq, type_, at, data)
            plan.event_rows.append(
                {
                    "session_id": append.session_id,
                    "seq": head.seq,
                    "type": type_,
                    "at": at,
                    "data": data,
                    "hash": head.hash,
                }
            )
        if append.status is not None:
            head.status, head.status_reason = append.status
        # Input (the unfenced path) leaves a timer: if no brain has taken the session by
        # then, the sweeper hands it to one, so input is never stranded, even when whoever
        # appended it died before saying so on the work queue.
        earlier = plan.session_rows.get(append.session_id, {}).get("attention_at")
        attention_at = at + INPUT_GRACE_S if append.epoch is None else earlier
        tally = plan.tallies.get(append.session_id, NO_TALLY) + append.tally
        plan.tallies[append.session_id] = tally
        plan.session_rows[append.session_id] = {
            "sid": append.session_id,
            "head_seq": head.seq,
            "head_hash": head.hash,
            "status": head.status,
            "status_reason": head.status_reason,
            "updated_at": at,
            "attention_at": attention_at,
            **tally.row(),
        }
        plan.accepted.append((append, Appended(head_seq=head.seq, at=at)))
    return plan


def _rejection(append: PendingAppend, head: Head | None) -> StoreError | None:
    if head is None:
        return SessionNotFound(append.session_id)
    # Fenced wins over Conflict: a superseded writer must stop, not re-read and retry.
    if append.epoch is not None and append.epoch != head.epoch:
        return Fenced(append.session_id, append.epoch, head.epoch)
    if append.expect_seq is not None and append.expect_seq != head.seq:
        return Conflict(append.session_id, append.expect_seq, head.seq)
    return None
