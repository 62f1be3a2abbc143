"""The benchmarks must keep running: a quick pass per backend, checked for every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import require_postgres
from tests.sandboxes import docker_backend, local_backend

ROOT = Path(__file__).resolve().parents[2]


FIGURES = {
    "store": ("1. sequential", "2a.", "2b.", "3. wake", "4. full replay", "5. on disk"),
    "hands": ("1. round trip", "2. cold start", "3. warm pool", "4. checkpoint"),
    "brain": ("1. durable", "2. recovery", "3. recovery", "4. tool calls", "5. first model"),
}


@pytest.mark.parametrize(
    ("benchmark", "backend"),
    [
        ("store", "sqlite"),
        ("store", "postgres"),
        ("hands", "local"),
        ("hands", "docker"),
        ("brain", "docker"),
    ],
)
def test_benchmark_prints_every_figure(benchmark: str, backend: str) -> None:
    {"postgres": require_postgres, "local": local_backend, "docker": docker_backend}.get(
        backend, lambda: None
    )()
    run = subprocess.run(
        [sys.executable, "-m", f"tests.benchmarks.{benchmark}", "--backend", backend, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    for figure in FIGURES[benchmark]:
        assert figure in run.stdout, run.stdout
