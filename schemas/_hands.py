"""Messages between brains and hands on NATS, and the subjects they travel on.

Provisioning is a request to the `hands` queue group; each sandbox then has subjects of its
own. A call is acknowledged at once and its outcome is published to JetStream with
`Nats-Msg-Id = <session>/<call_id>`, so a long call never hangs on one request and a brain
that crashed collects the outcome later.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from schemas._agent import SandboxSpec
from schemas._content import BlobRef
from schemas._events import Outcome

PROVISION_SUBJECT: Final = "keel.hands.provision"
HANDS_QUEUE: Final = "hands"
OUTCOME_STREAM: Final = "KEEL_OUTCOMES"
OUTCOME_SUBJECTS: Final = "keel.outcomes.>"
BLOB_BUCKET: Final = "keel-blobs"
CHECKPOINT_BUCKET: Final = "keel-checkpoints"


# Hands hosts ask whether their sandboxes are still reachable by a session; any brain answers.
SANDBOX_CHECK_SUBJECT: Final = "keel.sandboxes.check"
SANDBOX_CHECK_QUEUE: Final = "brains"
# Where a sandbox removed for idling leaves the digest of its final checkpoint (an object in
# the checkpoint bucket), for the sandbox that replaces it.
FINAL_CHECKPOINT_PREFIX: Final = "final."


def sandbox_subject(sandbox_id: str, verb: Literal["call", "cancel", "ack", "destroy"]) -> str:
    return f"keel.sandbox.{sandbox_id}.{verb}"


def outcome_subject(session_id: str) -> str:
    return f"keel.outcomes.{session_id}"


def outcome_msg_id(session_id: str, call_id: str) -> str:
    """JetStream deduplicates Nats-Msg-Id across the whole stream, so the id names the
    session too: two sessions whose models chose the same call id never lose an outcome."""
    return f"{session_id}/{call_id}"


class ProvisionRequest(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    sandbox: SandboxSpec = SandboxSpec()
    # Start from this workspace checkpoint (the last one the log names), or empty.
    checkpoint: str | None = None
    # The sandbox the log names (the one this replaces): if a host removed it for idling, it
    # kept a final checkpoint of it, which is as new as `checkpoint` or newer.
    previous_sandbox_id: str | None = None
    # The lease epoch of the brain run asking: until an event names the sandbox, only that
    # run can use it (see SandboxCheck).
    lease_epoch: int = 0


# While a host provisions, it tells the asker so this often (`ProvisionReply.working`): an
# asker that hears nothing for several of these knows the host is gone, long before the
# provisioning itself could time out.
PROVISION_PROGRESS_S: Final = 1.0


class ProvisionReply(msgspec.Struct, frozen=True, kw_only=True):
    # A progress note, not the answer: the host has the request and is still at it.
    working: bool = False
    sandbox_id: str = ""
    host_id: str = ""
    checkpoint: str | None = None
    error: str = ""


class CallRequest(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    session_id: str
    name: str
    input: dict[str, object] = {}
    attempt: int = 1


class CallAccepted(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    # The call_id was seen before: nothing runs again; its outcome is (re)published.
    duplicate: bool = False
    error: str = ""


class CancelRequest(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str


class OutcomeAck(msgspec.Struct, frozen=True, kw_only=True):
    """The brain recorded the outcome: the hands may forget it."""

    call_id: str


class ToolOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one call. `unknown` means the sandbox died before it could tell."""

    call_id: str
    session_id: str
    sandbox_id: str
    output: str = ""
    # The full output, when `output` had to be truncated.
    blob: BlobRef | None = None
    is_error: bool = False
    outcome: Outcome = "ok"
    exit_code: int | None = None
    duration_ms: float = 0.0
    # The workspace checkpoint this call left behind (mutating calls only).
    checkpoint: str | None = None
    # The sandbox is gone; a new one for the session starts from `checkpoint`.
    sandbox_lost: bool = False


class SandboxInUse(msgspec.Struct, frozen=True, kw_only=True):
    """A sandbox a hands host serves, for a session, provisioned by a run of `lease_epoch`."""

    sandbox_id: str
    session_id: str
    lease_epoch: int = 0


class SandboxCheck(msgspec.Struct, frozen=True, kw_only=True):
    """Can any run of these sessions still reach these sandboxes? Answered from the log."""

    sandboxes: list[SandboxInUse]


class SandboxVerdict(msgspec.Struct, frozen=True, kw_only=True):
    sandbox_id: str
    # False: no run of the session can reach it any more; the host removes it.
    reachable: bool
    # A call the log sent to it has no outcome yet: it is kept, idle or not.
    busy: bool = False
    reason: str = ""


class SandboxCheckReply(msgspec.Struct, frozen=True, kw_only=True):
    verdicts: list[SandboxVerdict] = []
    error: str = ""
