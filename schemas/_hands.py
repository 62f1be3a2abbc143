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


def sandbox_subject(sandbox_id: str, verb: Literal["call", "cancel", "ack", "destroy"]) -> str:
    return f"keel.sandbox.{sandbox_id}.{verb}"


def outcome_subject(session_id: str) -> str:
    return f"keel.outcomes.{session_id}"


def outcome_msg_id(session_id: str, call_id: str) -> str:
    """JetStream deduplicates Nats-Msg-Id across the whole stream, so the id names the
    session too: two sessions whose models chose the same call id never lose an outcome."""
    return f"{session_id}/{call_id}"


def progress_subject(session_id: str) -> str:
    return f"keel.progress.{session_id}"


class ProvisionRequest(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    sandbox: SandboxSpec = SandboxSpec()
    # Start from this workspace checkpoint (the last one the log names), or empty.
    checkpoint: str | None = None


class ProvisionReply(msgspec.Struct, frozen=True, kw_only=True):
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


class CallProgress(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    sandbox_id: str
    elapsed_ms: float


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
