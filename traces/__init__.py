"""OpenTelemetry GenAI traces of sessions, projected from their logs.

A session's spans are a pure function of its log (`SessionProjector`, `project`): the live
brain and `keel trace` compute the same spans, with the same ids. This package and its
light modules import no OpenTelemetry: `traces.export` (the SDK and the OTLP exporters) and
`traces.live` (the brain's exporting side) are imported only where tracing is on.

Its one setting is `TraceSettings`, read from the standard `OTEL_*` variables.
"""

from traces._projector import SessionProjector, project, unix_ns
from traces._settings import TraceSettings
from traces._spans import AttributeValue, Span, SpanEvent, SpanKind, SpanStatus

__all__ = [
    "AttributeValue",
    "SessionProjector",
    "Span",
    "SpanEvent",
    "SpanKind",
    "SpanStatus",
    "TraceSettings",
    "project",
    "unix_ns",
]
