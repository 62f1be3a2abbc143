"""`keel up`, `keel run`, `keel sessions` as a user runs them: real processes, real ports."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.brain.providers.model_server import ModelServer, Reply, openai_chunks
from tests.nats_server import free_port

# A drill with real processes and waits: `pytest -m "not slow"` runs the rest.
pytestmark = pytest.mark.slow

KEEL = [sys.executable, "-m", "deploy.cli"]
README = Path(__file__).resolve().parents[2] / "README.md"


def start_up(data_dir: Path, port: int, *options: str) -> subprocess.Popen[str]:
    up = subprocess.Popen(
        [*KEEL, "up", "--data-dir", str(data_dir), "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "KEEL_HTTP_PORT": str(port)},
        # Its own process group, holding all it starts: SIGKILL to the group is a power cut.
        start_new_session=True,
    )
    assert up.stdout is not None
    deadline = time.monotonic() + 60
    for line in up.stdout:
        if line.startswith("keel is up"):
            return up
        assert time.monotonic() < deadline, line
    raise AssertionError(f"keel up exited: {up.wait()}")


def keel(*args: str, data_dir: Path, port: int, timeout: float = 60) -> str:
    done = subprocess.run(
        [*KEEL, *args, "--url", f"http://127.0.0.1:{port}", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def stop(up: subprocess.Popen[str]) -> None:
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=30) == 0
    if up.stdout is not None:
        up.stdout.close()


def test_up_runs_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "keel"
    up = start_up(data_dir, port)
    try:
        shown = keel("run", "--demo", data_dir=data_dir, port=port)
        assert "AssertionError: add(2, 3) is -1" in shown  # the first run fails
        assert "ok: add works" in shown
        assert "[completed" in shown
        listed = keel("sessions", data_dir=data_dir, port=port)
        assert "completed" in listed
        session_id = shown.split()[1]
        audited = keel("audit", session_id, data_dir=data_dir, port=port)
        assert "chain ok" in audited and "state at seq" in audited and "completed" in audited
        # Someone edits the log behind keel's back: the audit names the row and fails.
        with sqlite3.connect(data_dir / "keel.db") as db:
            db.execute(
                "UPDATE events SET data = replace(data, 'add', 'sub') WHERE session_id = ?"
                " AND seq = 2",
                (session_id,),
            )
        tampered = subprocess.run(
            [
                *KEEL,
                *("audit", session_id, "--url", f"http://127.0.0.1:{port}"),
                *("--data-dir", str(data_dir)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert tampered.returncode == 1, tampered.stdout + tampered.stderr
        assert "chain BROKEN at seq 2" in tampered.stdout
    finally:
        stop(up)
    assert (data_dir / "keel.db").exists() and (data_dir / "api-key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_session_cut_off_by_a_restart_completes_after_it(tmp_path: Path, how: str) -> None:
    port = free_port()
    data_dir = tmp_path / "keel"
    up = start_up(data_dir, port)
    runner = subprocess.Popen(
        [*KEEL, "run", "--demo", "--url", f"http://127.0.0.1:{port}", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runner.stdout is not None
    for line in runner.stdout:
        if "Let me run the test" in line:
            break  # mid-session
    if how == "SIGTERM":
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
    else:
        os.killpg(up.pid, signal.SIGKILL)  # keel up and every process it started
        up.wait(timeout=30)
    assert up.stdout is not None
    up.stdout.close()
    runner.wait(timeout=30)
    runner.stdout.close()
    up = start_up(data_dir, port)
    try:
        deadline = time.monotonic() + 60
        while "completed" not in keel("sessions", data_dir=data_dir, port=port):
            assert time.monotonic() < deadline, keel("sessions", data_dir=data_dir, port=port)
            time.sleep(0.5)
    finally:
        stop(up)


def readme_quickstart(url: str, data_dir: Path, model: str = "keel-scripted") -> str:
    """The README's SDK program, pointed at this keel: its URL, key file and model."""
    section = README.read_text().split("## The Anthropic SDK, unmodified", 1)[1]
    program = section.split("```python\n", 1)[1].split("```", 1)[0]
    for written, actual in [
        ("http://127.0.0.1:8080", url),
        (".keel/api-key", str(data_dir / "api-key")),
        ('model="keel-scripted"', f"model={model!r}"),
    ]:
        assert written in program, written
        program = program.replace(written, actual)
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_readme_sdk_quickstart_runs_against_keel_up(tmp_path: Path) -> None:
    port = free_port()
    up = start_up(tmp_path / "keel", port)
    try:
        printed = readme_quickstart(f"http://127.0.0.1:{port}", tmp_path / "keel").split()
    finally:
        stop(up)
    assert printed[0] == "user.message" and printed[-1] == "session.status_idle", printed
    assert "agent.message" in printed


def test_keel_up_serves_the_quickstart_from_a_local_openai_compatible_model(
    tmp_path: Path,
) -> None:
    """`keel up --provider openai --base-url`: the agent's model id goes to that server."""
    model = ModelServer().start()
    model.reply(
        Reply(
            chunks=openai_chunks(
                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi!"}}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            )
        )
    )
    port = free_port()
    local = ("--provider", "openai", "--base-url", f"{model.url}/v1")
    up = start_up(tmp_path / "keel", port, *local)
    try:
        printed = readme_quickstart(
            f"http://127.0.0.1:{port}", tmp_path / "keel", model="qwen2.5-coder"
        ).split()
    finally:
        stop(up)
        model.close()
    assert "agent.message" in printed and printed[-1] == "session.status_idle", printed
    [request] = model.received
    assert request.path == "/v1/chat/completions" and request.body["model"] == "qwen2.5-coder"
    assert request.body["messages"][-1]["content"] == "Hello keel!"


def test_the_three_roles_example_runs_on_keel_up(tmp_path: Path) -> None:
    """examples/three_roles as shipped: a planner, two workers in parallel, each merged back
    into the coordinator's repository, a judge that fails the work, the fix, a judge that
    passes it."""
    port = free_port()
    data_dir = tmp_path / "keel"
    up = start_up(data_dir, port)
    try:
        shown = keel("run", "--example", "three-roles", data_dir=data_dir, port=port, timeout=180)
    finally:
        stop(up)
    assert shown.count("-> spawn_thread") == 5 and shown.count("-> message_thread") == 1, shown
    assert "1. slug.py: slugify(text)" in shown  # the planner's task list
    assert shown.count("[merged keel/worker-") == 3 and "[merged keel/planner-" in shown
    assert "AssertionError: hello,-world!" in shown  # the first judge fails slugify
    assert "bash returned: SATISFIED" in shown  # the second passes the merged fix
    assert "TASKS.md\n     slug.py\n     words.py" in shown and "[completed" in shown, shown
