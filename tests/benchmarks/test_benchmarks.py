"""The benchmarks must keep running: a quick pass per backend, checked for every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import require_postgres
from tests.hands.conftest import docker_backend, local_backend

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_store_benchmark_prints_every_figure(backend: str) -> None:
    if backend == "postgres":
        require_postgres()
    run = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.store", "--backend", backend, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    for figure in ("1. sequential", "2a.", "2b.", "3. wake", "4. full replay", "5. on disk"):
        assert figure in run.stdout, run.stdout


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_hands_benchmark_prints_every_figure(backend: str) -> None:
    if backend == "docker":
        docker_backend()
    else:
        local_backend()
    run = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.hands", "--backend", backend, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    for figure in ("1. round trip", "2. cold start", "3. warm pool", "4. checkpoint"):
        assert figure in run.stdout, run.stdout
