"""Idempotency keys: a keyed write records its answer in the same transaction as its effect.

So whatever crashes, a retry with the same key either finds the committed effect's answer or
finds no key at all (no effect happened) and performs the write once. There is no "in
progress" state anyone else can see: two concurrent writes with one key both try, and the
one whose key insert loses (a unique-key conflict) rolls its whole transaction back with
`KeyTaken`, and its caller replays the winner's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Connection, and_, delete, or_, select, update
from sqlalchemy.dialects import sqlite

from session_store._errors import KeyTaken
from session_store._records import Remembered
from session_store._tables import idempotency_keys

T = TypeVar("T")

# Marks a key claimed by a batch whose answer is written before the batch commits; never
# visible outside that transaction.
_CLAIMED = 0


# Compared by identity: two writes with one key are still two writes.
@dataclass(frozen=True, slots=True, eq=False)
class IdempotentWrite(Generic[T]):
    """A write sent with an Idempotency-Key: who sent it, the key, a hash of the request,
    and how the caller answers it from the write's result (called inside the transaction,
    so it must be quick and touch nothing but its argument)."""

    tenant: str
    key: str
    request_hash: str
    answer: Callable[[T], tuple[int, bytes]]


def recall(conn: Connection, tenant: str, key: str) -> Remembered | None:
    row = conn.execute(
        select(
            idempotency_keys.c.request_hash, idempotency_keys.c.status, idempotency_keys.c.body
        ).where(idempotency_keys.c.tenant == tenant, idempotency_keys.c.key == key)
    ).first()
    if row is None:
        return None
    return Remembered(request_hash=row[0], status=row[1], body=bytes(row[2]))


def record_answer(conn: Connection, write: IdempotentWrite[T], result: T, now: float) -> None:
    """Keep the answer to `write`, whose effect this transaction holds; KeyTaken (rolling the
    effect back with it) if another write with the key committed first."""
    status, body = write.answer(result)
    if not _insert_key(conn, write, status, body, now):
        raise KeyTaken(write.tenant, write.key)


def claim_keys(
    conn: Connection, writes: Iterable[IdempotentWrite[T]], now: float
) -> set[IdempotentWrite[T]]:
    """Take the keys of a batch's keyed writes before any effect is written; returns those
    whose key was taken already (by an earlier write, or by another one in this batch)."""
    return {w for w in writes if not _insert_key(conn, w, _CLAIMED, b"", now)}


def answer_claimed(conn: Connection, write: IdempotentWrite[T], result: T) -> None:
    status, body = write.answer(result)
    conn.execute(
        update(idempotency_keys)
        .where(idempotency_keys.c.tenant == write.tenant, idempotency_keys.c.key == write.key)
        .values(status=status, body=body)
    )


def unclaim(conn: Connection, writes: Iterable[IdempotentWrite[T]]) -> None:
    """Free the keys of writes the batch refused (a conflict, a fence): no effect, no key."""
    matches = [
        and_(idempotency_keys.c.tenant == w.tenant, idempotency_keys.c.key == w.key) for w in writes
    ]
    if matches:
        conn.execute(delete(idempotency_keys).where(or_(*matches)))


def _insert_key(
    conn: Connection, write: IdempotentWrite[T], status: int, body: bytes, now: float
) -> bool:
    # PostgreSQL's dialect is imported when first used: it is 40 ms of the start of every
    # embedded (SQLite) process.
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        insert = postgresql.insert
    else:
        insert = sqlite.insert  # type: ignore[assignment]
    inserted = conn.execute(
        insert(idempotency_keys)
        .values(
            tenant=write.tenant,
            key=write.key,
            request_hash=write.request_hash,
            status=status,
            body=body,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )
    return bool(inserted.rowcount == 1)
