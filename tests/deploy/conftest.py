"""What the deploy tests share: `docker`, and the images deploy/images/build.sh makes."""

from __future__ import annotations

import os
import subprocess
from typing import Final

import pytest

IMAGES: Final = ("keel", "keel-brain", "keel-hands", "keel-gateway")


def docker(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], check=False, capture_output=True, text=True, timeout=timeout_s
    )


@pytest.fixture(scope="module")
def keel_images() -> None:
    try:
        missing = [image for image in IMAGES if docker("image", "inspect", image).returncode]
    except FileNotFoundError:
        missing = list(IMAGES)
    if not missing:
        return
    what = f"the images {', '.join(missing)} (deploy/images/build.sh)"
    if os.environ.get("KEEL_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{what} are required here (KEEL_REQUIRE_DOCKER=1) but are missing")
    pytest.skip(f"{what} are not built; to run these: deploy/images/build.sh")
