"""Every process's metrics under `keel up`, scraped over real HTTP as Prometheus would, after
real scripted sessions through brain, hands and gateway, on both store backends: each child's
own `/metrics` (at the addresses the admin status lists) and the gateway's, which serves them
all with a `keel_process` label. The Grafana dashboard queries only names they export."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.admin import admin_call, admin_socket_path
from deploy.demo import demo_spec
from schemas import AdminStatus
from tests.backends import PostgresBackend
from tests.deploy.test_keel import start_up, stop
from tests.nats_server import free_port

pytestmark = pytest.mark.slow

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "keel-dashboard.json"
Labels = frozenset[tuple[str, str]]

# One tool call, then idle between turns: its sandbox stays live for the next message.
IDLE_SPEC: dict[str, Any] = {
    "model": {
        "provider": "scripted",
        "name": "scripted",
        "options": {
            "script": [
                {
                    "text": "Look first.",
                    "tool_calls": [{"name": "bash", "input": {"command": "true"}}],
                    "input_tokens": 300,
                    "output_tokens": 7,
                },
                {"text": "Done.", "input_tokens": 320, "output_tokens": 3},
                {"text": "Still done.", "input_tokens": 350, "output_tokens": 4},
            ]
        },
    },
    "tools": ["bash"],
    "turn_end": "idle",
}


class Scrape:
    """One `/metrics` answer: every sample by name and labels, and every family's type."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, Labels], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of `name` that has `labels` (and any others)."""
        wanted = set(labels.items())
        return sum(v for (n, have), v in self.samples.items() if n == name and wanted <= have)

    def names(self) -> set[str]:
        """Every series name a query may use, whether or not a series exists yet."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        names = {name for name, _ in self.samples}
        for family, kind in self.types.items():
            names |= {family + suffix for suffix in suffixes.get(kind, ("",))}
        return names


def scrape(url: str) -> Scrape:
    response = httpx2.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


@pytest.fixture(params=["sqlite", "postgres"])
def store_option(request: pytest.FixtureRequest) -> Iterator[tuple[str, ...]]:
    if request.param == "sqlite":
        yield ()
        return
    backend: PostgresBackend = request.getfixturevalue("postgres_backend")
    yield ("--store-url", backend.url)


def test_every_process_is_scraped_and_its_series_moved(
    tmp_path: Path, store_option: tuple[str, ...]
) -> None:
    port = free_port()
    data_dir = tmp_path / "keel"
    backend = "postgres" if store_option else "sqlite"
    up = start_up(data_dir, port, *store_option)
    try:
        url = f"http://127.0.0.1:{port}"
        key = (data_dir / "api-key").read_text().strip()
        with httpx2.Client(base_url=url, headers={"authorization": f"Bearer {key}"}) as api:
            demo = create(api, {"spec": demo_spec(), "message": "Fix add()."})
            idle = create(api, {"spec": IDLE_SPEC, "message": "Have a look."})
            wait_for(api, demo, lambda s: s["status"] == "completed")
            wait_for(api, idle, lambda s: s["status"] == "idle" and s["turns"] == 2)
            # Input through the gateway's group commit, answered by a third turn.
            posted = api.post(
                f"/v1/sessions/{idle}/events",
                json={"events": [{"type": "user.message", "text": "And now?"}]},
            )
            assert posted.status_code == 202, posted.text
            sessions = [
                wait_for(api, demo, lambda s: s["status"] == "completed"),
                wait_for(api, idle, lambda s: s["status"] == "idle" and s["turns"] == 3),
            ]
        status = admin_call(admin_socket_path(data_dir), AdminStatus())
        assert set(status.metrics_urls) == {"brain", "hands", "gateway"}
        assert status.metrics_urls["gateway"] == f"{url}/metrics"
        # Once the brain let both sessions go and the demo's sandbox went with its session.
        brain = scrape_until(status.metrics_urls["brain"], "keel_brain_sessions_held", 0)
        hands = scrape_until(status.metrics_urls["hands"], "keel_hands_sandboxes", 1, "served")
        every = scrape(status.metrics_urls["gateway"])
    finally:
        stop(up)

    # The brain: steps taken, the sessions woken, and what they spent, by model, equal to
    # the sessions' own usage as the API shows it.
    assert brain.value("keel_brain_step_seconds_count", action="CallModel") == 5 + 3
    assert brain.total("keel_brain_step_seconds_count", action="Dispatch") >= 1
    assert brain.total("keel_brain_wake_seconds_count") >= 3
    for kind in ("input", "output"):
        spent = sum(session["usage"][f"{kind}_tokens"] for session in sessions)
        assert brain.value("keel_model_tokens_total", model="scripted", kind=kind) == spent
    assert brain.value("keel_model_request_seconds_count", model="scripted", result="ok") == 8
    assert brain.value("keel_brain_fenced_total", operation="append") == 0
    # The hands: the idle session's sandbox is live (the demo's went with its session), two
    # cold starts, the demo's failing test run among the calls.
    assert hands.value("keel_hands_sandbox_start_seconds_count", backend="local") == 2
    assert hands.value("keel_hands_call_seconds_count", tool="bash", outcome="ok") >= 2
    assert hands.value("keel_hands_call_seconds_count", tool="bash", outcome="error") >= 1
    assert hands.total("keel_hands_call_seconds_count", tool="write_file") >= 2
    # The store, in each process that uses it: the brain's appends and the gateway's input.
    assert brain.value("keel_store_commit_seconds_count", backend=backend) > 0
    assert brain.value("keel_store_commit_appends_sum", backend=backend) > 0

    # The gateway's scrape holds every process's series, each labelled with its process.
    for process in ("gateway", "brain", "hands"):
        assert every.value("keel_process_up", keel_process=process) == 1
    assert every.value(
        "keel_model_tokens_total", model="scripted", kind="input", keel_process="brain"
    ) == brain.value("keel_model_tokens_total", model="scripted", kind="input")
    assert every.value("keel_hands_sandboxes", state="served", keel_process="hands") == 1
    assert every.total("keel_http_requests_total", keel_process="gateway") > 0
    for process in ("brain", "gateway"):
        commits = every.value(
            "keel_store_commit_appends_count", backend=backend, keel_process=process
        )
        assert commits > 0, process

    # The dashboard asks only for what the processes export.
    unknown = dashboard_metric_names() - every.names()
    assert not unknown, unknown


def scrape_until(url: str, name: str, expected: float, state: str | None = None) -> Scrape:
    labels = {} if state is None else {"state": state}
    deadline = time.monotonic() + 10
    while (scraped := scrape(url)).value(name, **labels) != expected:
        assert time.monotonic() < deadline, (name, scraped.value(name, **labels))
        time.sleep(0.1)
    return scraped


def create(api: httpx2.Client, body: dict[str, Any]) -> str:
    created = api.post("/v1/sessions", json=body)
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    return session_id


def wait_for(api: httpx2.Client, session_id: str, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        session: dict[str, Any] = api.get(f"/v1/sessions/{session_id}").json()
        if done(session):
            return session
        assert time.monotonic() < deadline, session
        time.sleep(0.2)


def dashboard_metric_names() -> set[str]:
    """The series names of every PromQL expression of the dashboard: label matchers and
    grouping labels (`keel_process` is a label) taken out first."""
    dashboard = json.loads(DASHBOARD.read_text())
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expression = re.sub(r"\{[^}]*\}", "", target["expr"])
            expression = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expression)
            names |= set(re.findall(r"\bkeel_\w+", expression))
    return names


def test_the_dashboard_is_a_plain_importable_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = dashboard["templating"]["list"]
    assert {"name": "datasource", "type": "datasource", "query": "prometheus"}.items() <= (
        variables[0].items()
    )
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
    # Every process has its panels.
    names = dashboard_metric_names()
    for prefix in ("keel_brain_", "keel_model_", "keel_hands_", "keel_store_", "keel_http_"):
        assert any(name.startswith(prefix) for name in names), prefix
