"""The store's Prometheus metrics, recorded by the store inside whichever process uses it (a
brain, a gateway) on that process's registry (`open_store(url, registry=...)`); a store
opened without one keeps them on a registry of its own, which nobody serves.

What an operator tunes the log by: how long a group commit takes (its one transaction, fsync
included), how many appends each carries (the batching working under load), and how often a
transient database failure was tried again (a busy SQLite file, a dropped PostgreSQL
connection, a serialization failure). The backend is the only label.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

# Appends per group commit: one when idle, up to the brains' sessions under load.
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class StoreMetrics:
    def __init__(self, backend: str, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        # Bound to the backend once: the hot path only observes.
        self.commit_seconds: Final = Histogram(
            "keel_store_commit_seconds",
            "Time to commit one group of appends (one transaction, its fsync included).",
            ["backend"],
            registry=registry,
        ).labels(backend)
        self.commit_appends: Final = Histogram(
            "keel_store_commit_appends",
            "Appends carried by one group commit.",
            ["backend"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        ).labels(backend)
        self.retries: Final = Counter(
            "keel_store_retries",
            "Store operations tried again after a transient database failure.",
            ["backend"],
            registry=registry,
        ).labels(backend)

    def retried(self) -> None:
        self.retries.inc()
