"""A brain's settings: one frozen Struct, each field read from its `KEEL_*` variable."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Annotated, Final, Literal

import msgspec

from brain.providers import RetryPolicy
from schemas import (
    NATS_URL_DOC,
    JetStreamSettings,
    LogSettings,
    MetricsAddr,
    parse_metrics_addr,
    setting,
    settings_from_env,
)
from traces import TraceSettings

DEFAULT_STORE_URL: Final = "sqlite:///keel.db"


class BrainSettings(msgspec.Struct, frozen=True, kw_only=True):
    store_url: Annotated[
        str, setting("KEEL_STORE_URL", "the session store: sqlite:///PATH or postgresql://...")
    ] = DEFAULT_STORE_URL
    nats_url: Annotated[str, setting("KEEL_NATS_URL", NATS_URL_DOC)] = "nats://127.0.0.1:4222"
    jetstream: JetStreamSettings = JetStreamSettings()
    brain_id: Annotated[
        str,
        setting(
            "KEEL_BRAIN_ID",
            "the lease owner name: restarted with the same id, a brain takes its sessions "
            "back at once; two live brains must never share one",
            shown="brain-<hostname>",
        ),
    ] = msgspec.field(default_factory=lambda: f"brain-{socket.gethostname()}")
    lease_s: Annotated[
        float,
        setting(
            "KEEL_LEASE_S",
            "a session whose owner stops renewing is claimable this long after the last renewal",
        ),
    ] = 2.0
    snapshot_every: Annotated[
        int, setting("KEEL_SNAPSHOT_EVERY", "events between snapshots of a session's state")
    ] = 100
    max_sessions: Annotated[
        int, setting("KEEL_MAX_SESSIONS", "sessions one brain drives at once")
    ] = 64
    hold_s: Annotated[
        float,
        setting(
            "KEEL_HOLD_S",
            "how long a brain keeps a session while its calls run, before it lets it wait "
            "for their outcomes",
        ),
    ] = 60.0
    lazy_hands: Annotated[
        bool,
        setting(
            "KEEL_LAZY_HANDS",
            "provision the sandbox while the model thinks (0 waits for it first)",
        ),
    ] = True
    probe_every_s: Annotated[
        float,
        setting(
            "KEEL_PROBE_EVERY_S",
            "how often a brain asks the hands about calls in flight (a dead host says nothing)",
        ),
    ] = 5.0
    lost_after_s: Annotated[
        float,
        setting(
            "KEEL_LOST_AFTER_S",
            "a call whose sandbox nobody serves for this long is recorded as unknown",
        ),
    ] = 10.0
    grader_heartbeat_s: Annotated[
        float,
        setting(
            "KEEL_GRADER_HEARTBEAT_S",
            "while an outcome's grader runs, how often the log says it still is",
        ),
    ] = 10.0
    sweep_every_s: Annotated[
        float,
        setting(
            "KEEL_SWEEP_EVERY_S", "how often the sweeper looks for expired leases and due timers"
        ),
    ] = 0.2
    peer_check_s: Annotated[
        float,
        setting(
            "KEEL_PEER_CHECK_S",
            "how often a brain asks the others whether they are alive, to take a dead one's "
            "sessions before its leases run out (0: never)",
        ),
    ] = 0.2
    metrics_addr: MetricsAddr = ""
    model_retry: RetryPolicy = RetryPolicy()
    log: LogSettings = LogSettings()
    traces: TraceSettings = TraceSettings()
    crash_at: Annotated[
        str | None,
        setting(
            "KEEL_CRASH_AT",
            "a drill: point[:n] makes the brain SIGKILL itself the n-th time it gets there",
        ),
    ] = None
    broken: Annotated[
        Literal["", "result_twice"],
        setting(
            "KEEL_BROKEN",
            "a test of `keel drill` only: result_twice records every tool result twice",
        ),
    ] = ""

    def __post_init__(self) -> None:
        if self.metrics_addr:
            parse_metrics_addr(self.metrics_addr)  # a bad one stops the brain at start

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BrainSettings:
        return settings_from_env(cls, environ)
