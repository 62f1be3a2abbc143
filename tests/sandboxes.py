"""Sandbox backends for tests that need real hands: skipped where a part is missing, unless
CI demands it (`KEEL_REQUIRE_*=1`), where a missing part fails the run instead."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hands import LocalBackend
from hands._backend import SandboxBackend

SANDBOX_IMAGE = os.environ.get("KEEL_SANDBOX_IMAGE", "keel-sandbox:latest")


def _missing(what: str, variable: str) -> None:
    """Skip without `what`, unless CI demands it (then fail: never a silent skip there)."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{what} is required here ({variable}=1) but is not available")
    pytest.skip(f"{what} is not available")


def local_backend(isolation: str = "bwrap") -> SandboxBackend:
    if isolation == "bwrap" and shutil.which("bwrap") is None:
        _missing("bubblewrap", "KEEL_REQUIRE_BWRAP")
    if isolation == "unshare" and os.geteuid() != 0:
        _missing("root (for the unshare sandbox)", "KEEL_REQUIRE_UNSHARE")
    return LocalBackend(isolation)  # type: ignore[arg-type]


def docker_backend() -> SandboxBackend:
    docker_ok = shutil.which("docker") and (
        subprocess.run(
            ["docker", "image", "inspect", SANDBOX_IMAGE], check=False, capture_output=True
        ).returncode
        == 0
    )
    if not docker_ok:
        _missing(f"a Docker engine with the {SANDBOX_IMAGE} image", "KEEL_REQUIRE_DOCKER")
    from hands._docker import DockerBackend

    return DockerBackend(SANDBOX_IMAGE)
