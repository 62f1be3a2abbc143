"""The hands host's settings, resolved once from the environment and flags."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

import msgspec


class HandsSettings(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://127.0.0.1:4222"
    data_dir: Path = Path.home() / ".local" / "share" / "keel" / "hands"
    backend: Literal["local", "docker"] = "local"
    docker_image: str = "keel-sandbox:latest"
    # How the local backend isolates: bubblewrap, or unshare + chroot; None picks bubblewrap
    # when it is installed.
    local_isolation: Literal["bwrap", "unshare"] | None = None
    host_id: str = f"hands-{socket.gethostname()}"
    # Sandboxes started ahead of demand, so provisioning costs almost nothing.
    warm_pool: int = 0
    # Output the model sees inline; beyond it, the full output goes to a blob.
    max_output_bytes: int = 30_000
    # Output beyond this kills the command (a 1 GB flood must not fill the disk).
    max_spill_bytes: int = 64 * 1024 * 1024
    # A sandbox no call used for this long is checkpointed and removed: a session waiting
    # days for input holds none, and its next call starts a fresh one from the checkpoint.
    sandbox_idle_s: float = 900.0
    # This often the host asks brains which of its quiet sandboxes a session can still reach
    # (a finished session's, one the log replaced), and removes the rest.
    sandbox_check_s: float = 30.0

    @classmethod
    def from_env(cls, **overrides: object) -> HandsSettings:
        env = os.environ
        values: dict[str, object] = {}
        if "KEEL_NATS_URL" in env:
            values["nats_url"] = env["KEEL_NATS_URL"]
        if "KEEL_HANDS_DIR" in env:
            values["data_dir"] = Path(env["KEEL_HANDS_DIR"])
        if "KEEL_SANDBOX_BACKEND" in env:
            values["backend"] = env["KEEL_SANDBOX_BACKEND"]
        if "KEEL_LOCAL_ISOLATION" in env:
            values["local_isolation"] = env["KEEL_LOCAL_ISOLATION"]
        if "KEEL_SANDBOX_IMAGE" in env:
            values["docker_image"] = env["KEEL_SANDBOX_IMAGE"]
        if "KEEL_HANDS_ID" in env:
            values["host_id"] = env["KEEL_HANDS_ID"]
        if "KEEL_SANDBOX_IDLE_S" in env:
            values["sandbox_idle_s"] = float(env["KEEL_SANDBOX_IDLE_S"])
        if "KEEL_SANDBOX_CHECK_S" in env:
            values["sandbox_check_s"] = float(env["KEEL_SANDBOX_CHECK_S"])
        if "KEEL_WARM_POOL" in env:
            values["warm_pool"] = int(env["KEEL_WARM_POOL"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return msgspec.convert(values, cls, str_keys=True, strict=False)
