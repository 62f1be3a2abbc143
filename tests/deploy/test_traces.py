"""Traces as a user gets them: `keel up` exporting over OTLP to Arize Phoenix, and
`keel trace` rebuilding the same spans from the log."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest

from deploy.demo import demo_spec
from deploy.up import api_key_path
from tests.deploy.otlp import OtlpTap, running_phoenix
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


def _keel_trace(session_id: str, data_dir: Path, *options: str) -> str:
    done = subprocess.run(
        [*KEEL, "trace", session_id, "--data-dir", str(data_dir), *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_phoenix_shows_the_live_spans_and_keel_trace_sends_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "phoenix").mkdir()
    with running_phoenix(tmp_path / "phoenix") as phoenix, OtlpTap(f"{phoenix}/v1/traces") as tap:
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
            replayed = _keel_trace(session_id, data_dir, "--json").splitlines()
            spans = [json.loads(line) for line in replayed]
            kinds = Counter(span["name"].split()[0] for span in spans)
            assert kinds == {"invoke_agent": 1, "chat": 5, "execute_tool": 5, "await_approval": 1}
            _until("live spans", lambda: len(tap.kept("live")) >= len(spans))
        finally:
            stop(up)
        live = tap.kept("live")

        # Auditing by replay: the same spans, byte for byte, from the log alone.
        tap.phase = "replay"
        assert _keel_trace(session_id, data_dir).startswith(f"exported {len(spans)} spans")
        assert sorted(tap.kept("replay")) == sorted(live) and len(live) == len(spans)

        # The receiver's own API: every span, and keel's token totals for the session.
        with httpx2.Client(base_url=phoenix, timeout=30) as receiver:
            shown = _until(
                "spans in Phoenix",
                lambda: _phoenix_spans(receiver, len(spans)),
            )
            assert {s["span_id"] for s in shown} == {s["span_id"] for s in spans}
            assert {s["trace_id"] for s in shown} == {s["trace_id"] for s in spans}
            counted = receiver.get(f"/v1/sessions/{session_id}").json()["data"]
        usage = session["usage"]
        assert usage["input_tokens"] == 4000 and usage["output_tokens"] == 300
        assert counted["token_count_prompt"] == usage["input_tokens"]
        assert counted["token_count_completion"] == usage["output_tokens"]
        assert counted["token_count_total"] == usage["input_tokens"] + usage["output_tokens"]


def _phoenix_spans(receiver: httpx2.Client, expected: int) -> list[dict[str, Any]] | None:
    answer = receiver.get("/v1/projects/default/spans/otlpv1", params={"limit": 1000})
    if answer.status_code != 200:
        return None
    spans: list[dict[str, Any]] = answer.json()["data"]
    return spans if len(spans) >= expected else None


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
