"""Sandbox backends for tests that need real hands: skipped where a part is missing, unless
CI demands it (`KEEL_REQUIRE_*=1`), where a missing part fails the run instead."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import NoReturn

import pytest

from hands import LocalBackend
from hands._backend import SandboxBackend

SANDBOX_IMAGE = os.environ.get("KEEL_SANDBOX_IMAGE", "keel-sandbox:latest")


# What a missing part stops, and the one command that enables it (the run's summary says).
HINTS = {
    "KEEL_REQUIRE_BWRAP": "apt-get install bubblewrap",
    "KEEL_REQUIRE_UNSHARE": "run the tests as root (unshare + chroot needs it)",
    "KEEL_REQUIRE_DOCKER": "deploy/sandbox/ensure-docker.sh && deploy/sandbox/build-image.sh",
    "KEEL_REQUIRE_LOCAL_SANDBOX": "apt-get install bubblewrap, or run the tests as root",
}


def missing(what: str, variable: str) -> NoReturn:
    """Skip without `what`, unless CI demands it (then fail: never a silent skip there)."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{what} is required here ({variable}=1) but is not available")
    pytest.skip(f"{what} is not available; to run these: {HINTS[variable]}")


def local_backend(isolation: str | None = None) -> SandboxBackend:
    """The local sandbox backend, isolated by `isolation`, or (None) by whatever this
    machine can: bubblewrap, else unshare + chroot as root."""
    if isolation is None:
        isolation = "bwrap" if shutil.which("bwrap") else "unshare"
        if isolation == "unshare" and os.geteuid() != 0:
            missing(
                "a local sandbox (bubblewrap, or root for unshare)", "KEEL_REQUIRE_LOCAL_SANDBOX"
            )
    if isolation == "bwrap" and shutil.which("bwrap") is None:
        missing("bubblewrap", "KEEL_REQUIRE_BWRAP")
    if isolation == "unshare" and os.geteuid() != 0:
        missing("root (for the unshare sandbox)", "KEEL_REQUIRE_UNSHARE")
    return LocalBackend(isolation)  # type: ignore[arg-type]


def docker_backend() -> SandboxBackend:
    docker_ok = shutil.which("docker") and (
        subprocess.run(
            ["docker", "image", "inspect", SANDBOX_IMAGE], check=False, capture_output=True
        ).returncode
        == 0
    )
    if not docker_ok:
        missing(f"a Docker engine with the {SANDBOX_IMAGE} image", "KEEL_REQUIRE_DOCKER")
    from hands._docker import DockerBackend

    return DockerBackend(SANDBOX_IMAGE)
