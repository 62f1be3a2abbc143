"""`keel up`'s admin socket: what a local operator's tool (`keel drill`) may ask of the
processes `keel up` runs, one JSON request and one JSON reply per connection."""

from __future__ import annotations

from typing import Literal

import msgspec

# The processes `keel up` runs, by the names its logs use.
ChildName = Literal["nats", "hands", "brain", "gateway"]
# SIGKILL: `keel up` starts the child again at once, as a supervisor would.
AdminSignal = Literal["SIGKILL", "SIGSTOP", "SIGCONT"]


class AdminStatus(msgspec.Struct, frozen=True, tag="status"):
    """Where everything is: the drill needs no other configuration."""


class AdminSignalChild(msgspec.Struct, frozen=True, kw_only=True, tag="signal"):
    child: ChildName
    signal: AdminSignal


class AdminRestart(msgspec.Struct, frozen=True, kw_only=True, tag="restart"):
    """Stop a child (SIGTERM) and start it again in the same place."""

    child: ChildName


AdminRequest = AdminStatus | AdminSignalChild | AdminRestart


class ChildState(msgspec.Struct, frozen=True, kw_only=True):
    name: ChildName
    pid: int
    running: bool
    starts: int


class AdminReply(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    error: str = ""
    children: list[ChildState] = []
    http_url: str = ""
    store_url: str = ""
    nats_url: str = ""
    hands_dir: str = ""
    sandbox: str = ""
    lease_s: float = 0.0
    # After this long quiet, a sandbox whose session ended is removed.
    sandbox_check_s: float = 0.0
    # Where each process serves its Prometheus metrics, by name; the gateway's serves them
    # all, each series labelled keel_process.
    metrics_urls: dict[str, str] = {}
