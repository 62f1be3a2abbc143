"""The brain's live tracer: it sees what the brain's runs read and commit (the brain's
`LogObserver`), projects spans from it off the brain's path, and hands the spans that
close to the SDK's batch processor, which exports them over OTLP on its own thread.

Imported only when tracing is on (`TraceSettings.exporting`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

import msgspec
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from schemas import Recorded
from traces._follower import LogFollower, LogReader
from traces._settings import TraceSettings
from traces._spans import Span
from traces.export import keel_resource, otlp_exporter, readable

logger = logging.getLogger("keel.traces")

# On close, how long the spans still queued may take to reach the receiver.
FLUSH_TIMEOUT_MS: Final = 2000


class _Seen(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    epoch: int
    records: Sequence[Recorded]
    committed: bool


class LiveTracer:
    def __init__(self, reader: LogReader, exporter: SpanExporter) -> None:
        self._resource: Final = keel_resource()
        self._processor: Final = BatchSpanProcessor(exporter)
        self._follower: Final = LogFollower(reader, self._export)
        self._seen: Final[asyncio.Queue[_Seen]] = asyncio.Queue()

    @classmethod
    def otlp(cls, reader: LogReader, settings: TraceSettings) -> LiveTracer:
        """The tracer of a brain: to the OTLP receiver `settings` name."""
        return cls(reader, otlp_exporter(settings))

    def saw(
        self, session_id: str, epoch: int, records: Sequence[Recorded], *, committed: bool
    ) -> None:
        """Called by a run for each batch it reads (even none: the run held the lease) or
        commits: queued, never waited on."""
        self._seen.put_nowait(
            _Seen(session_id=session_id, epoch=epoch, records=records, committed=committed)
        )

    async def run(self) -> None:
        while True:
            await self._take(await self._seen.get())

    async def close(self) -> None:
        """Project what is still queued, then flush the spans to the receiver (bounded)."""
        while not self._seen.empty():
            await self._take(self._seen.get_nowait())
        await asyncio.to_thread(self._shut_down)

    async def _take(self, seen: _Seen) -> None:
        try:
            await self._follower.saw(
                seen.session_id, seen.epoch, seen.records, committed=seen.committed
            )
        except Exception as exc:
            # Traces never stop the brain: this session's spans start over from its log,
            # and `keel trace` has whatever was missed.
            logger.warning("session %s: tracing failed: %r", seen.session_id, exc)
            self._follower.forget(seen.session_id)

    def _export(self, span: Span) -> None:
        self._processor.on_end(readable(span, self._resource))

    def _shut_down(self) -> None:
        # The flush is bounded; the shutdown after it then finds nothing left to send.
        self._processor.force_flush(FLUSH_TIMEOUT_MS)
        self._processor.shutdown()  # type: ignore[no-untyped-call]  # the SDK left it bare
