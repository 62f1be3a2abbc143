"""One scrape for every process of a `keel up`: the gateway's `/metrics` also serves the
series of the processes it is told of (`KEEL_METRICS_FEDERATE`, which `keel up` sets to its
brain's and hands host's addresses), each series labelled with its process (`keel_process`),
the gateway's own included.

Each process is scraped when the gateway is, concurrently, with a short timeout; one that
does not answer is left out of that scrape and shows as `keel_process_up 0`. The text is
read back with prometheus_client's own parser and written again with its own exposition, so
families two processes share (the store's, in a brain and a gateway) become one family with
a series per process, as the format requires.

A deployment of separate processes needs none of this: Prometheus scrapes each one, and its
`job` and `instance` labels tell them apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Final

import httpx2
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from schemas import SettingsError

PROCESS_LABEL: Final = "keel_process"
SCRAPE_TIMEOUT_S: Final = 2.0


class Federation:
    def __init__(self, targets: Mapping[str, str]) -> None:
        # Process name -> its /metrics URL.
        self.targets: Final = dict(targets)

    @classmethod
    def parse(cls, value: str) -> Federation | None:
        """`name=URL,name=URL`; None when empty (nothing to federate)."""
        targets: dict[str, str] = {}
        for pair in filter(None, (part.strip() for part in value.split(","))):
            name, _, url = pair.partition("=")
            if not name or not url.startswith(("http://", "https://")):
                raise SettingsError(
                    f"KEEL_METRICS_FEDERATE={value!r} is not valid; expected name=URL pairs"
                )
            targets[name] = url
        return cls(targets) if targets else None

    async def render(self, own: CollectorRegistry) -> bytes:
        """The gateway's series and every process's that answered, in the text format."""
        async with httpx2.AsyncClient(timeout=SCRAPE_TIMEOUT_S) as http:
            texts = await asyncio.gather(*(_scrape(http, url) for url in self.targets.values()))
        merged = _Merged()
        merged.add("gateway", own.collect())
        up = Metric("keel_process_up", "1 when the process's /metrics answered.", "gauge")
        up.add_sample("keel_process_up", {PROCESS_LABEL: "gateway"}, 1.0)
        for name, text in zip(self.targets, texts, strict=True):
            up.add_sample("keel_process_up", {PROCESS_LABEL: name}, float(text is not None))
            if text is not None:
                merged.add(name, text_string_to_metric_families(text))
        merged.add("gateway", [up])  # each sample names its process already
        registry = CollectorRegistry(auto_describe=False)
        registry.register(merged)
        return generate_latest(registry)


async def _scrape(http: httpx2.AsyncClient, url: str) -> str | None:
    try:
        response = await http.get(url)
    except httpx2.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


class _Merged:
    """Families by name, each series labelled with the process it came from (a Collector)."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def add(self, process: str, families: Iterable[Metric]) -> None:
        for family in families:
            merged = self._families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            if merged.type != family.type:
                continue  # two processes disagree on a name: the first one's stands
            # A series that names its process already (federated twice) keeps it.
            merged.samples.extend(
                sample._replace(labels={PROCESS_LABEL: process, **sample.labels})
                for sample in family.samples
            )

    def collect(self) -> Iterable[Metric]:
        return self._families.values()
