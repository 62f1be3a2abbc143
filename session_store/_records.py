"""What the store returns: plain frozen Structs, safe to hand to any other package."""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas import Status, Usage

WorkState = Literal["queued", "starting", "active", "stopping", "stopped"]


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
    # A thread: the session whose call spawned it, and the session at the top of its tree.
    parent_session_id: str | None = None
    thread_of: str | None = None


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
    # What follows `state`, in the order it was saved (none for a snapshot in one piece).
    parts: list[bytes] = []


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


class EnvironmentKey(msgspec.Struct, frozen=True, kw_only=True):
    """A new key of a self-hosted environment's worker: `key` is shown this once."""

    key_id: str
    tenant: str
    environment_id: str
    name: str
    key: str


class KeyScope(msgspec.Struct, frozen=True, kw_only=True):
    """What an environment key may serve: its environment's work and sessions."""

    tenant: str
    environment_id: str


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


class WorkItem(msgspec.Struct, frozen=True, kw_only=True):
    """A self-hosted environment's work item: a session that needs the environment's worker,
    and who holds it (`_work.py`)."""

    work_id: str
    tenant: str
    environment_id: str
    session_id: str
    state: WorkState
    metadata: dict[str, str] = {}
    created_at: float
    # When a poll last handed it out, and to which worker.
    polled_at: float | None = None
    worker_id: str | None = None
    acknowledged_at: float | None = None
    started_at: float | None = None
    # The last heartbeat, in microseconds since the epoch; None before the first.
    heartbeat_us: int | None = None
    lease_until: float | None = None
    # The lease's length, as the last ack or heartbeat granted it.
    ttl_s: int = 0
    stop_requested_at: float | None = None
    stopped_at: float | None = None


class WorkLease(msgspec.Struct, frozen=True, kw_only=True):
    """A work item's lease after a heartbeat: `extended` says whether the heartbeat kept it
    (False: the item is stopping or stopped, and its worker should stop)."""

    state: WorkState
    heartbeat_us: int | None
    extended: bool
    ttl_s: int


class WorkPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[WorkItem]
    # Pass back as `cursor` for the next page; None on the last page.
    next_cursor: str | None = None


class WorkStats(msgspec.Struct, frozen=True, kw_only=True):
    # Items waiting for a poll, and items a poll handed out that nobody acknowledged yet.
    depth: int
    pending: int
    oldest_queued_at: float | None
    # Workers that polled in the last `POLLERS_WINDOW_S`.
    workers_polling: int


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's webhook endpoint: where its sessions' events are POSTed, signed with
    `secret`; the events logged from `created_at` on."""

    endpoint_id: str
    tenant: str
    url: str
    secret: str
    # The `data.type`s it takes; empty: every one keel sends.
    event_types: list[str] = []
    created_at: float
    updated_at: float


class WebhookBacklog(msgspec.Struct, frozen=True, kw_only=True):
    """A session with webhook events still to send to an endpoint: from part `next_part`
    of those its log's event `next_seq` makes, up to its head; or, once it is deleted
    (`deleted_at`), only `session.deleted`."""

    session_id: str
    next_seq: int = 1
    next_part: int = 0
    head_seq: int = 0
    deleted_at: float | None = None
