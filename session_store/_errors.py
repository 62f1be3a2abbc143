"""The store's one exception tree. No driver exception ever leaves this package.

StoreError
├── SessionNotFound    the session id is unknown
├── SessionExists      create_session with an id already taken
├── SessionBusy        delete_session of a session that is not finished, or still held
├── Conflict           append's expect_seq is not the session's head
├── Fenced             the caller's lease epoch is no longer current: stop touching the session
├── LeaseHeld          claim while another owner holds an unexpired lease
├── ResourceNotFound   an agent or environment (or that version of it) is unknown
├── VersionConflict    a resource update whose expected version is no longer the latest
├── KeyTaken           a keyed write lost its Idempotency-Key to one that committed first
├── WorkStateConflict  a work item is not in a state the operation applies to
├── HeartbeatMismatch  a work item's heartbeat named another heartbeat than its last one
├── InvalidInput       a bad id, tenant, seq or argument
│   ├── InvalidEvent       not a valid event, or one only the store may write
│   └── PayloadTooLarge    an encoded event over the configured limit
└── StoreUnavailable   the database failed in a way retrying did not fix
"""

from __future__ import annotations

from session_store._records import WorkLease


class StoreError(Exception):
    pass


class SessionNotFound(StoreError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found")
        self.session_id = session_id


class SessionExists(StoreError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} already exists")
        self.session_id = session_id


class SessionBusy(StoreError):
    def __init__(self, session_id: str, why: str, *, passing: bool = False) -> None:
        super().__init__(f"session {session_id!r} cannot be deleted: {why}")
        self.session_id = session_id
        # The reason will pass by itself (a brain finishing up): a retry soon may succeed.
        self.passing = passing


class Conflict(StoreError):
    def __init__(self, session_id: str, expect_seq: int, head_seq: int) -> None:
        super().__init__(
            f"session {session_id!r}: expected head {expect_seq}, but head is {head_seq}"
        )
        self.session_id = session_id
        self.expect_seq = expect_seq
        self.head_seq = head_seq


class Fenced(StoreError):
    def __init__(self, session_id: str, epoch: int, current_epoch: int) -> None:
        super().__init__(
            f"session {session_id!r}: lease epoch {epoch} was superseded by {current_epoch}"
        )
        self.session_id = session_id
        self.epoch = epoch
        self.current_epoch = current_epoch


class LeaseHeld(StoreError):
    def __init__(self, session_id: str, owner: str, until: float) -> None:
        super().__init__(f"session {session_id!r} is leased by {owner!r} until {until:.3f}")
        self.session_id = session_id
        self.owner = owner
        self.until = until


class ResourceNotFound(StoreError):
    def __init__(self, kind: str, resource_id: str, version: int | None = None) -> None:
        at = "" if version is None else f" at version {version}"
        super().__init__(f"no {kind} {resource_id!r}{at}")
        self.kind = kind
        self.resource_id = resource_id


class VersionConflict(StoreError):
    pass


class KeyTaken(StoreError):
    def __init__(self, tenant: str, key: str) -> None:
        super().__init__(f"the Idempotency-Key {key!r} of {tenant!r} belongs to another write")
        self.tenant = tenant
        self.key = key


class WorkStateConflict(StoreError):
    pass


class HeartbeatMismatch(StoreError):
    """Another worker may hold the item: `lease` is its lease as the store holds it."""

    def __init__(self, work_id: str, lease: WorkLease) -> None:
        super().__init__(f"work {work_id!r}: the heartbeat does not follow the item's last one")
        self.work_id = work_id
        self.lease = lease


class InvalidInput(StoreError):
    pass


class InvalidEvent(InvalidInput):
    pass


class PayloadTooLarge(InvalidInput):
    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class StoreUnavailable(StoreError):
    pass
