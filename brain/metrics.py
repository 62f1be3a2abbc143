"""A brain's Prometheus metrics, on a registry of its own (tests run several brains in one
process); `python -m brain` serves it at `KEEL_METRICS_ADDR` (`schemas.MetricsServer`).

Labels are bounded: a model's name, an action's kind, how a run stopped; never a session or
a call id. What a session spent is counted when it is committed, from the same events the
store's totals are kept from (`session_store._projection.change_of`), so the tokens and cost
by model here add up to the sessions' own usage, and a response a crash lost before it was
recorded (asked again by the next brain) is counted once, as it is paid for in the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from brain.providers import ModelProvider, ModelRequest
from schemas import ContextCompacted, Event, ModelResponse, ModelSpec, OutcomeEvaluated, Usage

# Model requests take seconds to minutes, not the default buckets' milliseconds.
MODEL_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
# A step is a durable append at least (about a millisecond) and at most a model request.
STEP_BUCKETS: Final = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
# What the events that spend are: the worker's responses, a grader's, a compaction's.
_SPENDING: Final = (ModelResponse, OutcomeEvaluated, ContextCompacted)
_TOKEN_KINDS: Final = ("input", "output", "cache_read", "cache_write")


class BrainMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry: Final = registry if registry is not None else CollectorRegistry()
        self.sessions_held: Final = Gauge(
            "keel_brain_sessions_held",
            "Sessions this brain is driving now (each holds its lease).",
            registry=self.registry,
        )
        self.steps: Final = Histogram(
            "keel_brain_step_seconds",
            "Time to perform one step `decide` chose (its appends, its model request), by "
            "action; the count is the steps taken.",
            ["action"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.wakes: Final = Histogram(
            "keel_brain_wake_seconds",
            "Time from waking a session to its first decision: the claim, the snapshot and "
            "the tail folded, what a crash left repaired.",
            registry=self.registry,
        )
        self.runs: Final = Counter(
            "keel_brain_runs",
            "Runs of a session that ended, by how they stopped (waiting, ended, fenced, busy, "
            "gone).",
            ["stopped"],
            registry=self.registry,
        )
        self.fenced: Final = Counter(
            "keel_brain_fenced",
            "Appends and lease renewals refused because another run had taken the session.",
            ["operation"],
            registry=self.registry,
        )
        self.compactions: Final = Counter(
            "keel_brain_compactions",
            "Context compactions recorded, by strategy (handoff, summary).",
            ["strategy"],
            registry=self.registry,
        )
        self.model_seconds: Final = Histogram(
            "keel_model_request_seconds",
            "Time to a model's whole response (one request, retries included), by model and "
            "result (ok, error).",
            ["model", "result"],
            buckets=MODEL_BUCKETS,
            registry=self.registry,
        )
        self.tokens: Final = Counter(
            "keel_model_tokens",
            "Tokens of the model responses recorded, by model and kind (input, output, "
            "cache_read, cache_write).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.cost: Final = Counter(
            "keel_model_cost_usd",
            "What the model responses recorded cost, in US dollars, by model.",
            ["model"],
            registry=self.registry,
        )

    def committed(self, events: Sequence[Event]) -> None:
        """Count what `events`, just committed, spent and did."""
        for event in events:
            if isinstance(event, _SPENDING):
                self._spent(event.model or "unknown", event.usage, event.cost_usd)
                if isinstance(event, ContextCompacted):
                    self.compactions.labels(event.strategy).inc()

    def _spent(self, model: str, usage: Usage, cost_usd: float) -> None:
        counts = (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
        )
        for kind, count in zip(_TOKEN_KINDS, counts, strict=True):
            if count:
                self.tokens.labels(model, kind).inc(count)
        if cost_usd:
            self.cost.labels(model).inc(cost_usd)

    def timed(
        self, providers: Callable[[ModelSpec], ModelProvider]
    ) -> Callable[[ModelSpec], ModelProvider]:
        """`providers` whose every request is timed: one place for the worker's, a
        grader's, a judge's and a compaction's requests alike."""

        def timed_provider(spec: ModelSpec) -> ModelProvider:
            return _TimedProvider(providers(spec), self.model_seconds)

        return timed_provider


class _TimedProvider:
    def __init__(self, provider: ModelProvider, seconds: Histogram) -> None:
        self._provider = provider
        self._seconds = seconds

    async def complete(
        self, request: ModelRequest, on_delta: Callable[[str], None] | None = None
    ) -> ModelResponse:
        started = time.perf_counter()
        try:
            response = await self._provider.complete(request, on_delta)
        except Exception:
            self._observe(request.model.name, "error", started)
            raise
        # The model that answered, as the response names it (and its tokens are counted).
        self._observe(response.model or request.model.name, "ok", started)
        return response

    def _observe(self, model: str, result: str, started: float) -> None:
        self._seconds.labels(model, result).observe(time.perf_counter() - started)
