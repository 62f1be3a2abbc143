"""What the store returns: plain frozen Structs, safe to hand to any other package."""

from __future__ import annotations

import msgspec

from schemas import Status, Usage


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    tenant: str
    created_at: float
    updated_at: float
    head_seq: int
    status: Status
    status_reason: str = ""
    lease_owner: str | None = None
    lease_epoch: int = 0
    lease_until: float | None = None
    title: str = ""
    metadata: dict[str, str] = {}
    # Running totals of the session's model responses (and outcome graders), kept by its
    # appends.
    usage: Usage = Usage()
    cost_usd: float = 0.0
    turns: int = 0
    # Made through the Managed Agents API: from this agent version, in this environment.
    agent_id: str | None = None
    agent_version: int | None = None
    environment_id: str | None = None
    archived_at: float | None = None


class SessionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SessionInfo]
    # Pass back as `cursor` for the next page; None on the last page.
    next_cursor: str | None = None


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """Proof of ownership: every fenced append names `epoch`."""

    session_id: str
    owner: str
    epoch: int
    until: float
    # The head when the lease was taken, so the new owner knows where its log ends.
    head_seq: int


class Appended(msgspec.Struct, frozen=True, kw_only=True):
    """A committed append: the new head, and the `at` every event of it was stamped with,
    so a writer can fold exactly what a later replay will read."""

    head_seq: int
    at: float


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    seq: int
    version: int
    state: bytes


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of re-walking a session's hash chain.

    `bad_seq` is the first seq that is edited, missing or out of place; None when `ok`.
    """

    session_id: str
    ok: bool
    checked: int
    head_seq: int
    bad_seq: int | None = None
    problem: str = ""


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A new API key: `key` is shown this once; the store keeps only its hash."""

    key_id: str
    tenant: str
    name: str
    key: str


class Remembered(msgspec.Struct, frozen=True, kw_only=True):
    """What an Idempotency-Key stands for: the request it came with (a hash) and the answer
    recorded with that request's effect."""

    request_hash: str
    status: int
    body: bytes


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """One version of a Managed Agents resource (an agent, an environment): its body is the
    API's JSON, kept as the API wrote it."""

    resource_id: str
    kind: str
    version: int
    tenant: str
    body: str
    created_at: float
    updated_at: float
    archived_at: float | None = None


class ResourcePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Resource]
    # Pass back as `cursor` for the next page; None on the last page.
    next_cursor: str | None = None
