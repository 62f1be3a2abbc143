"""A hands host's Prometheus metrics, on a registry of its own (tests run several hosts in one
process); `python -m hands` serves it at `KEEL_METRICS_ADDR` (`schemas.MetricsServer`).

Labels are bounded: a tool's name (one keel knows, else `unknown`), an outcome's kind, where
a sandbox came from, why one was reaped; never a session, sandbox or call id.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas import HARNESS_TOOLS, TOOLS

# A sandbox starts in tens of milliseconds (bubblewrap) to seconds (a Docker container).
START_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A call is a file read (a millisecond) to a long command (its timeout, minutes).
CALL_BUCKETS: Final = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0),
)


class HandsMetrics:
    def __init__(self) -> None:
        self.registry: Final = CollectorRegistry()
        self.sandboxes: Final = Gauge(
            "keel_hands_sandboxes",
            "Sandboxes this host runs now: served (a session's, taking calls) or warm (started "
            "ahead of demand).",
            ["state"],
            registry=self.registry,
        )
        self.starts: Final = Histogram(
            "keel_hands_sandbox_start_seconds",
            "Time to start a sandbox from nothing (a cold start): its directories, the "
            "backend's start, the executor answering.",
            ["backend"],
            buckets=START_BUCKETS,
            registry=self.registry,
        )
        self.provisions: Final = Counter(
            "keel_hands_provisions",
            "Sandboxes handed to sessions, by where they came from (warm, cold).",
            ["source"],
            registry=self.registry,
        )
        self.calls: Final = Histogram(
            "keel_hands_call_seconds",
            "Time from a call's arrival to its outcome being ready to publish, by tool and "
            "outcome (ok, error, unknown); the count is the outcomes by kind.",
            ["tool", "outcome"],
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )
        self.reaped: Final = Counter(
            "keel_hands_reaped",
            "Sandboxes removed by the reaper, by reason: idle (after a final checkpoint) or "
            "unreachable (no session can use it).",
            ["reason"],
            registry=self.registry,
        )

    def call_done(self, tool: str, outcome: str, seconds: float) -> None:
        known = tool in TOOLS or tool in HARNESS_TOOLS
        self.calls.labels(tool if known else "unknown", outcome).observe(seconds)
