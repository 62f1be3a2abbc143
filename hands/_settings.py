"""The hands host's settings, resolved once from the environment and flags."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from schemas import (
    NATS_URL_DOC,
    JetStreamSettings,
    LogSettings,
    MetricsAddr,
    parse_metrics_addr,
    setting,
    settings_from_env,
)


class HandsSettings(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: Annotated[str, setting("KEEL_NATS_URL", NATS_URL_DOC)] = "nats://127.0.0.1:4222"
    jetstream: JetStreamSettings = JetStreamSettings()
    data_dir: Annotated[
        Path,
        setting(
            "KEEL_HANDS_DIR",
            "where the host keeps its sandboxes and their records",
            shown="~/.local/share/keel/hands",
        ),
    ] = msgspec.field(default_factory=lambda: Path.home() / ".local" / "share" / "keel" / "hands")
    backend: Annotated[
        Literal["local", "docker"], setting("KEEL_SANDBOX_BACKEND", "how sandboxes are made")
    ] = "local"
    docker_image: Annotated[
        str, setting("KEEL_SANDBOX_IMAGE", "the Docker backend's sandbox image")
    ] = "keel-sandbox:latest"
    local_isolation: Annotated[
        Literal["bwrap", "unshare"] | None,
        setting(
            "KEEL_LOCAL_ISOLATION",
            "how the local backend isolates: bubblewrap, or unshare + chroot (root only); "
            "unset picks bubblewrap when it is installed",
        ),
    ] = None
    host_id: Annotated[
        str,
        setting(
            "KEEL_HANDS_ID",
            "the host's name; a restarted host must keep it to adopt its sandboxes",
            shown="hands-<hostname>",
        ),
    ] = msgspec.field(default_factory=lambda: f"hands-{socket.gethostname()}")
    warm_pool: Annotated[int, setting("KEEL_WARM_POOL", "sandboxes started ahead of demand")] = 0
    max_output_bytes: Annotated[
        int,
        setting(
            "KEEL_MAX_OUTPUT_BYTES",
            "output a model sees inline; the full output goes to a blob",
        ),
    ] = 30_000
    max_spill_bytes: Annotated[
        int,
        setting("KEEL_MAX_SPILL_BYTES", "output past this kills the command (a flood)"),
    ] = 64 * 1024 * 1024
    sandbox_idle_s: Annotated[
        float,
        setting(
            "KEEL_SANDBOX_IDLE_S",
            "a sandbox no call used for this long is checkpointed and removed",
        ),
    ] = 900.0
    sandbox_check_s: Annotated[
        float,
        setting(
            "KEEL_SANDBOX_CHECK_S",
            "how often the host asks brains which quiet sandboxes a session can still reach",
        ),
    ] = 30.0
    metrics_addr: MetricsAddr = ""

    log: LogSettings = LogSettings()

    def __post_init__(self) -> None:
        if self.metrics_addr:
            parse_metrics_addr(self.metrics_addr)  # a bad one stops the host at start

    @classmethod
    def from_env(cls, **overrides: object) -> HandsSettings:
        return settings_from_env(cls, overrides=overrides)
