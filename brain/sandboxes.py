"""Which sandboxes a session can still reach, for the hands hosts that serve them.

A hands host never touches the log, so it cannot tell a sandbox a session will use again
from one it never will; any brain answers `keel.sandboxes.check` (queue group `brains`) from
the log, read only: no lease taken, nothing appended. A sandbox is reachable while its
session is not finished and a call the log sent to it has no outcome yet (`busy`: kept even
when idle), or the log names it (the session's latest sandbox), or the run that provisioned
it still holds the session (it may be about to name it, even in place of the one the log
names). Everything else is left over from a crash or a replacement.
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec
from nats.aio.msg import Msg

from brain.audit import fold_to
from brain.fold import FoldError
from brain.state import STATE_VERSION, decode_state
from schemas import (
    TERMINAL_STATUSES,
    SandboxCheck,
    SandboxCheckReply,
    SandboxInUse,
    SandboxVerdict,
)
from session_store import SessionLog, SessionNotFound, StoreError

log = logging.getLogger("keel.brain")

_REQUEST: Final = msgspec.json.Decoder(SandboxCheck)
_ENCODER: Final = msgspec.json.Encoder()


async def verdict(store: SessionLog, sandbox: SandboxInUse) -> SandboxVerdict:
    def unreachable(reason: str) -> SandboxVerdict:
        return SandboxVerdict(sandbox_id=sandbox.sandbox_id, reachable=False, reason=reason)

    try:
        info = await store.get_session(sandbox.session_id)
    except SessionNotFound:
        return unreachable("its session does not exist")
    if info.status in TERMINAL_STATUSES:
        return unreachable(f"its session is {info.status}")
    snapshot = await store.latest_snapshot(sandbox.session_id, STATE_VERSION)
    start = decode_state(snapshot.state, snapshot.parts) if snapshot is not None else None
    state = await fold_to(store, sandbox.session_id, info.head_seq, start)

    def reachable(reason: str, *, busy: bool = False) -> SandboxVerdict:
        return SandboxVerdict(
            sandbox_id=sandbox.sandbox_id, reachable=True, busy=busy, reason=reason
        )

    if any(
        call.phase == "dispatched" and call.sandbox_id == sandbox.sandbox_id
        for call in state.open_calls.values()
    ):
        return reachable("a call the log sent to it has no outcome yet", busy=True)
    if state.sandbox_id == sandbox.sandbox_id:
        return reachable("the log names it")
    if info.lease_owner is not None and info.lease_epoch == sandbox.lease_epoch:
        # The run that asked for it (to start one, or to replace the sandbox the log names)
        # may be about to name it.
        return reachable("the run that asked for it still holds the session")
    if state.sandbox_id is not None:
        return unreachable(f"the log names {state.sandbox_id} instead")
    return unreachable("no event names it and the run that asked for it has ended")


async def check(store: SessionLog, request: SandboxCheck) -> SandboxCheckReply:
    verdicts: list[SandboxVerdict] = []
    for sandbox in request.sandboxes:
        try:
            verdicts.append(await verdict(store, sandbox))
        except (StoreError, FoldError, msgspec.DecodeError) as exc:
            # Unknown is not unreachable: that sandbox stays until it is asked about again.
            log.debug("checking sandbox %s failed: %s", sandbox.sandbox_id, exc)
    return SandboxCheckReply(verdicts=verdicts)


async def answer_sandbox_check(store: SessionLog, message: Msg) -> None:
    """Reply to one check; a malformed one gets an error, never a dead subscription."""
    try:
        request = _REQUEST.decode(message.data)
    except msgspec.DecodeError as exc:
        reply = SandboxCheckReply(error=f"malformed sandbox check: {exc}")
    else:
        reply = await check(store, request)
    if message.reply:
        await message.respond(_ENCODER.encode(reply))
