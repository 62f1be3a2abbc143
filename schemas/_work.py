"""How sessions reach brains on NATS: the work queue, and the live token stream.

Anyone who changes a session (the gateway appending user input, a brain's sweeper finding an
expired lease) publishes an `Attention` on `keel.work.<session>`. The `KEEL_WORK` stream keeps
it until one brain has driven the session and released it (work-queue retention, one durable
consumer shared by every brain). The brain driving a session also listens on that subject
with a plain subscription, so input reaches it at once while it works.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

WORK_STREAM: Final = "KEEL_WORK"
WORK_SUBJECTS: Final = "keel.work.*"
WORK_CONSUMER: Final = "brains"
# Requests to fold a session's log to a seq, answered by any one brain (queue group).
AUDIT_SUBJECT: Final = "keel.audit"
AUDIT_QUEUE: Final = "brains"


def work_subject(session_id: str) -> str:
    return f"keel.work.{session_id}"


def log_subject(session_id: str) -> str:
    """Where a writer says "the log grew" (the new head seq, as text) after each commit, so
    live viewers read the store at once instead of polling it."""
    return f"keel.log.{session_id}"


def delta_subject(session_id: str) -> str:
    return f"keel.deltas.{session_id}"


class Attention(msgspec.Struct, frozen=True, kw_only=True):
    """Session `session_id` may have something to do."""

    session_id: str
    reason: str = ""


class AuditRequest(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    at_seq: int


class AuditReply(msgspec.Struct, frozen=True, kw_only=True):
    """The state after folding events 1..`at_seq` (see `schemas.AuditView`), or an error."""

    state: dict[str, Any] | None = None
    error: str = ""
    snapshot_seq: int | None = None
    snapshot_matches: bool | None = None


class ModelDelta(msgspec.Struct, frozen=True, kw_only=True):
    """A piece of a model response as it streams; never persisted (the log keeps the whole
    `model.response`). `turn` tells viewers which response it belongs to; `context_seq`
    is the last seq the model was shown, so the response is recorded at the seq after it
    unless input lands first (the Managed Agents stream names its previews by that seq)."""

    session_id: str
    turn: int
    text: str
    context_seq: int = 0
