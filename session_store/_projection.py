"""The `sessions` row as a projection of the log: one fold, wherever the row is written.

Next to its lease, a session's row keeps what the API shows without replaying the log: the
head (seq and hash), the status and its reason, the title and metadata it was created with,
running totals of its model responses and outcome graders (tokens, cost; turns), and the
input timer.
`create_session` projects its first events onto an empty row, `fork_session` the events it
copies, and group commit (`_batch.py`) each append onto the head it locked. Pure: times are
passed in, nothing is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from schemas import (
    TERMINAL_STATUSES,
    ContextCompacted,
    ManagedOrigin,
    ModelResponse,
    OutcomeEvaluated,
    SessionCreated,
    SessionStatus,
    Status,
    Usage,
)
from session_store._hashing import GENESIS, chain_hash
from session_store._records import SessionInfo

# How long input may wait for a brain before the sweeper gives it to one.
INPUT_GRACE_S: Final = 1.0

_METADATA: Final = msgspec.json.Encoder()
_METADATA_DECODER: Final = msgspec.json.Decoder(dict[str, str])


class Tally(msgspec.Struct, frozen=True):
    """Totals of model responses: a session's, or what some of its events add to them."""

    usage: Usage = Usage()
    cost_usd: float = 0.0
    turns: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            usage=self.usage + other.usage,
            cost_usd=self.cost_usd + other.cost_usd,
            turns=self.turns + other.turns,
        )


NO_TALLY: Final = Tally()


class Change(msgspec.Struct, frozen=True):
    """What a run of events changes in its session's row, known before the row is read (an
    append is encoded outside its transaction)."""

    # The last session.status among the events, as (status, reason).
    status: tuple[Status, str] | None = None
    # What their model responses add to the totals.
    tally: Tally = NO_TALLY
    # The session.created among them (title and metadata).
    created: SessionCreated | None = None


NO_CHANGE: Final = Change()


def change_of(events: Iterable[object]) -> Change:
    status: tuple[Status, str] | None = None
    tally = NO_TALLY
    created: SessionCreated | None = None
    for event in events:
        match event:
            case SessionStatus():
                status = (event.status, event.reason)
            case ModelResponse():
                tally = tally + Tally(usage=event.usage, cost_usd=event.cost_usd, turns=1)
            case OutcomeEvaluated() | ContextCompacted():
                # An outcome's grader, and a compaction's summary, spend as the worker does
                # (no turn of the session's).
                tally = tally + Tally(usage=event.usage, cost_usd=event.cost_usd)
            case SessionCreated():
                created = event
    if status is None and created is None and tally is NO_TALLY:
        return NO_CHANGE  # most appends: no allocation on the hot path
    return Change(status, tally, created)


class SessionRow(msgspec.Struct, frozen=True, kw_only=True):
    """A session's row as its log projects it (the lease, tenant and creation time aside).

    A row started from a locked head (group commit) does not know the session's totals,
    title or metadata: its `tally` is then what the appends add (`head_update`)."""

    session_id: str
    head_seq: int = 0
    head_hash: bytes = GENESIS
    status: Status = "idle"
    status_reason: str = ""
    title: str = ""
    metadata: dict[str, str] = {}
    tally: Tally = NO_TALLY
    updated_at: float = 0.0
    # The input timer these events ask for; an append's update keeps an earlier one.
    wake_at: float | None = None
    # The agent version and environment a Managed Agents session was made from.
    managed: ManagedOrigin | None = None

    def project(
        self,
        rows: Iterable[tuple[str, float, str]],
        change: Change,
        *,
        at: float,
        is_input: bool = False,
    ) -> tuple[SessionRow, list[dict[str, object]]]:
        """The row once the encoded events `rows` ((type, at, data), whose `change` is
        given) follow its head, written at `at`; and those events as rows of `events`,
        chained onto the head. Input (`is_input`) leaves a timer: if no brain has taken the
        session by then, the sweeper hands it to one, so input is never stranded, even when
        whoever appended it died before saying so on the work queue."""
        seq, hash_ = self.head_seq, self.head_hash
        chained: list[dict[str, object]] = []
        for type_, event_at, data in rows:
            seq += 1
            hash_ = chain_hash(hash_, self.session_id, seq, type_, event_at, data)
            chained.append(
                {
                    "session_id": self.session_id,
                    "seq": seq,
                    "type": type_,
                    "at": event_at,
                    "data": data,
                    "hash": hash_,
                }
            )
        status, reason = change.status or (self.status, self.status_reason)
        created = change.created
        row = SessionRow(
            session_id=self.session_id,
            head_seq=seq,
            head_hash=hash_,
            status=status,
            status_reason=reason,
            title=self.title if created is None else created.title,
            metadata=self.metadata if created is None else created.metadata,
            tally=self.tally if change.tally is NO_TALLY else self.tally + change.tally,
            updated_at=at,
            wake_at=at + INPUT_GRACE_S if is_input else self.wake_at,
            managed=self.managed if created is None else created.managed,
        )
        return row, chained

    def forked(self, parent_id: str, at_seq: int) -> SessionRow:
        """A fork is a new start: a copy of a finished or running session waits for input
        (or a brain) like any session; other statuses (paused, waiting) carry over."""
        if self.status in TERMINAL_STATUSES or self.status == "running":
            return msgspec.structs.replace(
                self, status="idle", status_reason=f"forked from {parent_id} at seq {at_seq}"
            )
        return self

    def new_row(self, tenant: str, created_at: float) -> dict[str, Any]:
        """As the values of a new session's row (nobody holds its lease)."""
        return {
            "session_id": self.session_id,
            "tenant": tenant,
            "created_at": created_at,
            "updated_at": self.updated_at,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "status": self.status,
            "status_reason": self.status_reason,
            "lease_owner": None,
            "lease_epoch": 0,
            "lease_until": None,
            "wake_at": self.wake_at,
            "title": self.title,
            "metadata": _METADATA.encode(self.metadata).decode(),
            "input_tokens": self.tally.usage.input_tokens,
            "output_tokens": self.tally.usage.output_tokens,
            "cache_read_tokens": self.tally.usage.cache_read_tokens,
            "cache_write_tokens": self.tally.usage.cache_write_tokens,
            "cost_usd": self.tally.cost_usd,
            "turns": self.tally.turns,
        } | self._managed_columns()

    def _managed_columns(self) -> dict[str, Any]:
        """Only a Managed Agents session names them (the columns default to null)."""
        if self.managed is None:
            return {}
        return {
            "agent_id": self.managed.agent_id,
            "agent_version": self.managed.agent_version,
            "environment_id": self.managed.environment_id,
        }

    def head_update(self) -> dict[str, Any]:
        """As the bind parameters of the head update, for a row started from a locked
        head: totals are added to the columns, not set, and the timer is set unless an
        earlier one is."""
        return {
            "sid": self.session_id,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "status": self.status,
            "status_reason": self.status_reason,
            "updated_at": self.updated_at,
            "attention_at": self.wake_at,
            # Spelled out, not built from the column names: this runs for every append.
            "d_input_tokens": self.tally.usage.input_tokens,
            "d_output_tokens": self.tally.usage.output_tokens,
            "d_cache_read_tokens": self.tally.usage.cache_read_tokens,
            "d_cache_write_tokens": self.tally.usage.cache_write_tokens,
            "d_cost_usd": self.tally.cost_usd,
            "d_turns": self.tally.turns,
        }

    def info(self, tenant: str, created_at: float) -> SessionInfo:
        """What `get_session` will read of the new row (`new_row`)."""
        return session_info(self.new_row(tenant, created_at))


def session_info(row: Mapping[Any, Any]) -> SessionInfo:
    """A session's row (its columns by name) as the API's `SessionInfo`."""
    return SessionInfo(
        session_id=row["session_id"],
        tenant=row["tenant"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        head_seq=row["head_seq"],
        status=row["status"],
        status_reason=row["status_reason"],
        lease_owner=row["lease_owner"],
        lease_epoch=row["lease_epoch"],
        lease_until=row["lease_until"],
        title=row["title"],
        metadata=_METADATA_DECODER.decode(row["metadata"]),
        usage=Usage(
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            cache_read_tokens=row["cache_read_tokens"],
            cache_write_tokens=row["cache_write_tokens"],
        ),
        cost_usd=row["cost_usd"],
        turns=row["turns"],
        agent_id=row.get("agent_id"),
        agent_version=row.get("agent_version"),
        environment_id=row.get("environment_id"),
        archived_at=row.get("archived_at"),
        parent_session_id=row.get("parent_session_id"),
        thread_of=row.get("thread_of"),
    )
