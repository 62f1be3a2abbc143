"""How long a self-hosted worker holds a work item without a heartbeat, and how a long poll
waits: the settings of the `environments.work` routes (`gateway.managed._work_queue`)."""

from __future__ import annotations

from typing import Final

import msgspec

DEFAULT_LEASE_S: Final = 60


class WorkSettings(msgspec.Struct, frozen=True, kw_only=True):
    # The lease an ack or a heartbeat grants when it asks for no other length. A worker that
    # stops heartbeating loses its item this long after its last heartbeat, and another
    # worker takes it; the SDK's worker heartbeats every min(lease / 2, 30 s). Shorter than
    # the hosted API's 300 s, so a dead worker's call resumes within a minute.
    lease_s: int = DEFAULT_LEASE_S
    # The longest lease a heartbeat may ask for (`desired_ttl_seconds`).
    max_lease_s: int = 3600
    # How often a long poll (`block_ms`) reads the store again while it waits for work.
    recheck_s: float = 0.2
