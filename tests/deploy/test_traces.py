"""Traces as a user gets them: `keel up` exporting over OTLP to Arize Phoenix, and
`keel trace` rebuilding the same spans from the log."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from brain import initial_state, replay
from deploy.demo import demo_spec
from deploy.up import api_key_path
from session_store import SqliteEventStore
from tests.brain.harness import Answer, Harness
from tests.brain.scenario import coding_script, coding_spec
from tests.deploy.otlp import OtlpTap, Phoenix, running_phoenix
from tests.deploy.test_keel import KEEL, start_up, stop
from tests.nats_server import free_port

# Phoenix starts in 10-20 s, keel up in a few: more than the default per-test timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

WAIT_S = 60.0


def _until(what: str, check: Any) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} in {WAIT_S:g} s"
        time.sleep(0.2)
    return found


def _session_with_an_approval(api: httpx2.Client) -> dict[str, Any]:
    """The scripted demo (model calls, tool calls, a command check) with its edit asked
    for and granted: every kind of span but compaction and grading."""
    spec = demo_spec() | {"permissions": {"edit_file": "ask"}}
    created = api.post("/v1/sessions", json={"spec": spec, "message": "Fix add()."})
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]

    def asked() -> str | None:
        events = api.get(f"/v1/sessions/{session_id}/events").json()
        return next(
            (e["data"]["call_id"] for e in events["items"] if e["type"] == "approval.requested"),
            None,
        )

    call_id = _until("approval asked for", asked)
    granted = api.post(
        f"/v1/sessions/{session_id}/events",
        json={"events": [{"type": "approval.granted", "call_id": call_id, "by": "reviewer"}]},
    )
    assert granted.status_code == 202, granted.text

    def ended() -> dict[str, Any] | None:
        session: dict[str, Any] = api.get(f"/v1/sessions/{session_id}").json()
        return session if session["status"] == "completed" else None

    return _until("completed session", ended)


def _keel_trace(session_id: str, *options: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [*KEEL, "trace", session_id, *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """One Phoenix for the module: spans are kept by id, and each test's are its own."""
    with running_phoenix(tmp_path_factory.mktemp("phoenix")) as running:
        yield running


def test_phoenix_shows_the_live_spans_and_keel_trace_sends_the_same(
    phoenix: Phoenix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OtlpTap(f"{phoenix.url}/v1/traces") as tap:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tap.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        port, data_dir = free_port(), tmp_path / "keel"
        up = start_up(data_dir, port)
        try:
            key = api_key_path(data_dir).read_text().strip()
            headers = {"authorization": f"Bearer {key}"}
            with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as api:
                session = _session_with_an_approval(api)
            session_id = session["id"]
            # The replay, as JSON: what the live brain must have sent.
            replayed = _keel_trace(session_id, "--data-dir", str(data_dir), "--json").splitlines()
            spans = [json.loads(line) for line in replayed]
            kinds = Counter(span["name"].split()[0] for span in spans)
            assert kinds == {"invoke_agent": 1, "chat": 5, "execute_tool": 5, "await_approval": 1}
            _until("live spans", lambda: len(tap.kept("live")) >= len(spans))
        finally:
            stop(up)
        live = tap.kept("live")

        # Auditing by replay: the same spans, byte for byte, from the log alone.
        tap.phase = "replay"
        assert _keel_trace(session_id, "--data-dir", str(data_dir)).startswith(
            f"exported {len(spans)} spans"
        )
        assert sorted(tap.kept("replay")) == sorted(live) and len(live) == len(spans)

        # The receiver's own API: every span, and keel's token totals for the session.
        usage = session["usage"]
        assert usage["input_tokens"] == 4000 and usage["output_tokens"] == 300
        _phoenix_shows(phoenix, session_id, spans, usage)


def _phoenix_shows(
    phoenix: Phoenix, session_id: str, spans: list[dict[str, Any]], usage: dict[str, int]
) -> None:
    """Phoenix's own API has every span of the session, and keel's token totals for it."""
    trace_ids = sorted({span["trace_id"] for span in spans})

    def shown() -> list[dict[str, Any]] | None:
        answer = receiver.get(
            "/v1/projects/default/spans/otlpv1", params={"limit": 1000, "trace_id": trace_ids}
        )
        found: list[dict[str, Any]] = answer.json()["data"] if answer.status_code == 200 else []
        return found if len(found) >= len(spans) else None

    with httpx2.Client(base_url=phoenix.url, timeout=30) as receiver:
        assert {s["span_id"] for s in _until("spans in Phoenix", shown)} == {
            s["span_id"] for s in spans
        }
        counted = receiver.get(f"/v1/sessions/{session_id}").json()["data"]
    assert counted["token_count_prompt"] == usage["input_tokens"]
    assert counted["token_count_completion"] == usage["output_tokens"]
    assert counted["token_count_total"] == usage["input_tokens"] + usage["output_tokens"]


async def test_a_session_run_untraced_is_sent_by_keel_trace_over_grpc(
    phoenix: Phoenix, tmp_path: Path
) -> None:
    """Auditing by replay: no brain traced this session (the real `wake`, in memory);
    `keel trace` sends its spans from the log alone, and Phoenix counts its tokens."""
    store = SqliteEventStore(tmp_path / "keel.db")
    await store.migrate()
    try:
        harness = Harness(store)
        harness.hands.default = Answer(output="ok")
        session_id = await harness.start_session(coding_spec(coding_script()))
        assert (await harness.drive(session_id)).status == "completed"
        state = replay(await store.read(session_id), initial_state(session_id))
    finally:
        await store.close()
    store_url = ("--store-url", f"sqlite:///{tmp_path / 'keel.db'}")
    replayed = _keel_trace(session_id, *store_url, "--json").splitlines()
    spans = [json.loads(line) for line in replayed]
    grpc = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    assert _keel_trace(session_id, *store_url, env=grpc).startswith(f"exported {len(spans)}")
    usage = {"input_tokens": state.usage.input_tokens, "output_tokens": state.usage.output_tokens}
    assert usage == {"input_tokens": 2400, "output_tokens": 140}
    _phoenix_shows(phoenix, session_id, spans, usage)


def test_keel_trace_of_a_session_nobody_has_says_so(tmp_path: Path) -> None:
    store = ("--store-url", f"sqlite:///{tmp_path / 'keel.db'}")

    def keel(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*KEEL, *args, *store], capture_output=True, text=True, timeout=60, check=False
        )

    unmade = keel("trace", "ses_nobody")
    assert unmade.returncode == 2 and "reading the store failed" in unmade.stderr
    assert keel("keys", "create").returncode == 0  # the store exists now
    done = keel("trace", "ses_nobody")
    assert done.returncode == 2 and "no session ses_nobody" in done.stderr
