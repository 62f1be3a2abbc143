"""The invariants of DESIGN.md, checked on a session's log: after a test's run, or a drill.

Each check reports what it finds as `Violation`s (the session, the seq and the call where it
can say), so a drill lists every one it saw instead of stopping at the first.
"""

from __future__ import annotations

from collections import Counter

import msgspec

from brain import STATE_VERSION, decode_state, encode_state, initial_state, replay
from schemas import (
    TERMINAL_STATUSES,
    ApprovalGranted,
    ApprovalRequested,
    Recorded,
    ToolDispatched,
    ToolRequested,
    ToolResult,
)
from session_store import EventStore


class Violation(msgspec.Struct, frozen=True, kw_only=True):
    """One broken promise: which, where, and what was seen."""

    kind: str
    session_id: str
    detail: str
    seq: int | None = None
    call_id: str | None = None


async def check_log(store: EventStore, session_id: str) -> tuple[list[Recorded], list[Violation]]:
    """Every invariant a session's log alone can show; returns the log for further checks."""
    log = await store.read(session_id)
    violations = await _nothing_lost(store, session_id, log)
    status = (await store.get_session(session_id)).status
    violations += _one_outcome_per_call(session_id, log, over=status in TERMINAL_STATUSES)
    violations += _calls_in_order(session_id, log)
    violations += await _snapshot_replays(store, session_id, log)
    return log, violations


async def _nothing_lost(store: EventStore, session_id: str, log: list[Recorded]) -> list[Violation]:
    """1. Seq is gapless and the hash chain verifies."""
    found = []
    for expected, record in enumerate(log, start=1):
        if record.seq != expected:
            detail = f"seq {record.seq} where {expected} was due"
            found.append(
                Violation(kind="seq_gap", session_id=session_id, detail=detail, seq=expected)
            )
            break
    head = await store.head(session_id)
    if head != len(log):
        detail = f"head_seq {head} but {len(log)} events read"
        found.append(
            Violation(kind="head_mismatch", session_id=session_id, detail=detail, seq=head)
        )
    verification = await store.verify(session_id)
    if not verification.ok:
        found.append(
            Violation(
                kind="hash_chain",
                session_id=session_id,
                detail=verification.problem or "the chain does not verify",
                seq=verification.bad_seq,
            )
        )
    return found


def _one_outcome_per_call(session_id: str, log: list[Recorded], *, over: bool) -> list[Violation]:
    """3. Every tool.requested ends in exactly one outcome (at most one while the session can
    still go on); no result answers nothing."""
    found = []
    requested = Counter(r.event.call_id for r in log if isinstance(r.event, ToolRequested))
    results: dict[str, list[int]] = {}
    for record in log:
        if isinstance(record.event, ToolResult):
            results.setdefault(record.event.call_id, []).append(record.seq)
    for call_id, count in requested.items():
        if count > 1:
            detail = f"tool.requested {count} times"
            found.append(_call(session_id, "requested_twice", detail, None, call_id))
    for call_id, seqs in results.items():
        if call_id not in requested:
            found.append(_call(session_id, "result_without_request", "", seqs[0], call_id))
        if len(seqs) > 1:
            detail = f"{len(seqs)} outcomes, at seqs {seqs}"
            found.append(_call(session_id, "outcomes", detail, seqs[1], call_id))
    if over:
        for call_id in sorted(requested.keys() - results.keys()):
            detail = "the session is over with the call open"
            found.append(_call(session_id, "call_left_open", detail, None, call_id))
    return found


def _calls_in_order(session_id: str, log: list[Recorded]) -> list[Violation]:
    """A call is dispatched only after it was requested, never after its result; 6. an
    approval-gated call never runs without a prior grant."""
    found = []
    phase: dict[str, str] = {}
    for record in log:
        event = record.event
        if isinstance(event, ToolRequested):
            phase[event.call_id] = "requested"
        elif isinstance(event, ToolDispatched):
            before = phase.get(event.call_id, "nothing")
            if before not in ("requested", "granted", "dispatched"):
                detail = f"dispatched after {before}"
                found.append(
                    _call(session_id, "dispatch_out_of_order", detail, record.seq, event.call_id)
                )
            phase[event.call_id] = "dispatched"
        elif isinstance(event, ApprovalRequested):
            phase[event.call_id] = "asked"
        elif isinstance(event, ApprovalGranted):
            phase[event.call_id] = "granted"
        elif isinstance(event, ToolResult):
            phase[event.call_id] = "done"
    return found


async def _snapshot_replays(
    store: EventStore, session_id: str, log: list[Recorded]
) -> list[Violation]:
    """4. Snapshot + tail equals full replay."""
    snapshot = await store.latest_snapshot(session_id, STATE_VERSION)
    if snapshot is None:
        return []
    full = replay(log, initial_state(session_id))
    resumed = replay(log[snapshot.seq :], decode_state(snapshot.state, snapshot.parts))
    if encode_state(resumed) == encode_state(full):
        return []
    detail = "snapshot + tail differs from the full replay"
    return [
        Violation(kind="snapshot_replay", session_id=session_id, detail=detail, seq=snapshot.seq)
    ]


def _call(session_id: str, kind: str, detail: str, seq: int | None, call_id: str) -> Violation:
    return Violation(kind=kind, session_id=session_id, detail=detail, seq=seq, call_id=call_id)
