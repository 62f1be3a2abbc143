"""Audit: a session's state folded to any seq, for whoever asks on NATS (the gateway).

The fold is the brain's, and the gateway may not import it (they meet only in the store and
on NATS), so any brain answers `keel.audit` requests (queue group `brains`). An audit only
reads: it takes no lease and appends nothing, so it never disturbs the brain driving the
session. It also checks invariant 4 where it can: the newest snapshot at or before the seq,
plus the tail after it, must fold to the same state as the full replay.
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec
from nats.aio.msg import Msg

from brain.fold import FoldError, initial_state, replay
from brain.state import STATE_VERSION, SessionState, decode_state
from schemas import AuditReply, AuditRequest
from session_store import SessionLog, StoreError

log = logging.getLogger("keel.brain")

_PAGE: Final = 1000
_REQUEST: Final = msgspec.json.Decoder(AuditRequest)
_ENCODER: Final = msgspec.json.Encoder()


async def fold_to(
    store: SessionLog, session_id: str, at_seq: int, state: SessionState | None = None
) -> SessionState:
    """`state` (a fresh one by default) with the session's events after it, up to `at_seq`."""
    state = state or initial_state(session_id)
    while state.seq < at_seq:
        records = await store.read(
            session_id, after_seq=state.seq, limit=min(_PAGE, at_seq - state.seq)
        )
        if not records:
            break
        replay(records, state)
    return state


async def audit(store: SessionLog, request: AuditRequest) -> AuditReply:
    try:
        full = await fold_to(store, request.session_id, request.at_seq)
        snapshot = await store.latest_snapshot(request.session_id, STATE_VERSION)
        if snapshot is None or snapshot.seq > request.at_seq:
            return AuditReply(state=msgspec.to_builtins(full))
        from_snapshot = await fold_to(
            store, request.session_id, request.at_seq, decode_state(snapshot.state, snapshot.parts)
        )
    except (StoreError, FoldError, msgspec.DecodeError) as exc:
        return AuditReply(error=f"folding the log failed: {exc}")
    return AuditReply(
        state=msgspec.to_builtins(full),
        snapshot_seq=snapshot.seq,
        snapshot_matches=from_snapshot == full,
    )


async def answer_audit(store: SessionLog, message: Msg) -> None:
    """Reply to one audit request; a malformed one gets an error, never a dead subscription."""
    try:
        request = _REQUEST.decode(message.data)
    except msgspec.DecodeError as exc:
        reply = AuditReply(error=f"malformed audit request: {exc}")
    else:
        reply = await audit(store, request)
    if message.reply:
        await message.respond(_ENCODER.encode(reply))
