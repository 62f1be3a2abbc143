"""A brain's configuration, from `KEEL_*` environment variables."""

from __future__ import annotations

import os
import socket
from typing import Final

import msgspec

from brain.providers import RetryPolicy

DEFAULT_STORE_URL: Final = "sqlite:///keel.db"


class BrainSettings(msgspec.Struct, frozen=True, kw_only=True):
    store_url: str = DEFAULT_STORE_URL
    nats_url: str = "nats://127.0.0.1:4222"
    # The lease owner name. A brain restarted with the same id takes its sessions back at
    # once; two live brains must never share one.
    brain_id: str = "brain"
    # A session whose owner stops renewing is claimable this long after the last renewal.
    lease_s: float = 2.0
    # Save a snapshot after this many events since the last one.
    snapshot_every: int = 100
    # Sessions one brain drives at once.
    max_sessions: int = 64
    # How long a brain keeps a session while its tool calls run, before it lets the session
    # wait (released, with a timer) and the outcomes wake it again.
    hold_s: float = 60.0
    # Lazy hands: the first model call starts at once while the sandbox is provisioned
    # alongside; False waits for the sandbox first (only to measure what laziness saves).
    lazy_hands: bool = True
    # While calls run, ask their hands about them this often: a host that died with a call in
    # flight publishes nothing, and only asking finds out.
    probe_every_s: float = 5.0
    # A dispatched call whose sandbox nobody serves for this long is recorded as `unknown`.
    lost_after_s: float = 10.0
    # How often the sweeper looks for expired leases and due timers.
    sweep_every_s: float = 0.2
    model_retry: RetryPolicy = RetryPolicy()
    # A drill names a point where the brain kills itself (see `brain.crashpoints`).
    crash_at: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> BrainSettings:
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            store_url=env.get("KEEL_STORE_URL", default.store_url),
            nats_url=env.get("KEEL_NATS_URL", default.nats_url),
            brain_id=env.get("KEEL_BRAIN_ID", f"brain-{socket.gethostname()}"),
            lease_s=float(env.get("KEEL_LEASE_S", default.lease_s)),
            snapshot_every=int(env.get("KEEL_SNAPSHOT_EVERY", default.snapshot_every)),
            max_sessions=int(env.get("KEEL_MAX_SESSIONS", default.max_sessions)),
            hold_s=float(env.get("KEEL_HOLD_S", default.hold_s)),
            lazy_hands=env.get("KEEL_LAZY_HANDS", "1") != "0",
            probe_every_s=float(env.get("KEEL_PROBE_EVERY_S", default.probe_every_s)),
            lost_after_s=float(env.get("KEEL_LOST_AFTER_S", default.lost_after_s)),
            sweep_every_s=float(env.get("KEEL_SWEEP_EVERY_S", default.sweep_every_s)),
            model_retry=RetryPolicy(
                attempts=int(env.get("KEEL_MODEL_ATTEMPTS", default.model_retry.attempts)),
                base_delay_s=float(
                    env.get("KEEL_MODEL_RETRY_DELAY_S", default.model_retry.base_delay_s)
                ),
                timeout_s=float(env.get("KEEL_MODEL_TIMEOUT_S", default.model_retry.timeout_s)),
            ),
            crash_at=env.get("KEEL_CRASH_AT") or None,
        )
