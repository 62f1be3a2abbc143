"""The benchmarks must keep running: a quick pass per backend, checked for every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import require_postgres
from tests.sandboxes import docker_backend, local_backend

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


FIGURES = {
    "store": (
        "1. sequential",
        "2a.",
        "2b.",
        "3. wake",
        "3a. snapshot",
        "3b. compactions",
        "4. full replay",
        "5. on disk",
    ),
    "hands": ("1. round trip", "2. cold start", "3. warm pool", "4. checkpoint"),
    "brain": ("1. durable", "2. recovery", "3. recovery", "4. tool calls", "5. first model"),
    "gateway": ("1a. POST", "1b. GET", "2. ", "2a. fan-out", "2b. fan-out", "3. "),
    "managed_agents": ("1a. sessions.create", "1b. events.send", "2. ", "3. fan-out", "4. "),
    "traces": ("1. durable tool step with tracing off", "2. tracer", "3. keel trace", "4. "),
    "threads": ("1. spawn to first model request", "2. coordinator with 10 workers"),
}


@pytest.mark.parametrize(
    ("benchmark", "backend"),
    [
        ("store", "sqlite"),
        ("store", "postgres"),
        ("hands", "local"),
        ("hands", "docker"),
        ("brain", "docker"),
        ("threads", "sqlite"),
        ("threads", "postgres"),
    ],
)
def test_benchmark_prints_every_figure(benchmark: str, backend: str) -> None:
    {"postgres": require_postgres, "local": local_backend, "docker": docker_backend}.get(
        backend, lambda: None
    )()
    stdout = quick_run(f"tests.benchmarks.{benchmark}", "--backend", backend)
    for figure in FIGURES[benchmark]:
        assert figure in stdout, stdout


def test_gateway_benchmark_prints_every_figure() -> None:
    stdout = quick_run("tests.benchmarks.gateway")  # SQLite only: no backend to choose
    for figure in FIGURES["gateway"]:
        assert figure in stdout, stdout


def test_managed_agents_benchmark_prints_every_figure() -> None:
    local_backend()  # its tool turns run in local sandboxes
    stdout = quick_run("tests.benchmarks.managed_agents")  # keel up: SQLite
    for figure in FIGURES["managed_agents"]:
        assert figure in stdout, stdout


def test_traces_benchmark_prints_every_figure() -> None:
    local_backend()  # its steps run in local sandboxes
    stdout = quick_run("tests.benchmarks.traces")
    for figure in FIGURES["traces"]:
        assert figure in stdout, stdout


def quick_run(module: str, *arguments: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", module, *arguments, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout
