"""keel's spans sent over OTLP by the official OpenTelemetry SDK and exporters.

Imported only where tracing is on (the brain with an endpoint set, `keel trace`): the SDK
costs a brain nothing when traces are off. The exporters read the standard variables
themselves (headers, timeout, certificates, compression); the endpoint and the transport
are `TraceSettings`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from traces._settings import TraceSettings
from traces._spans import Span

SCOPE: Final = InstrumentationScope("keel.traces")
_KINDS: Final = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
# Spans per OTLP request from `export` (the SDK's batch processor's default).
BATCH: Final = 512


def keel_resource() -> Resource:
    """The SDK's resource from the environment (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES),
    named `keel` unless the environment names it."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "keel"}))
    return resource


def otlp_exporter(settings: TraceSettings) -> SpanExporter:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=settings.traces_endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=settings.traces_endpoint)


def readable(span: Span, resource: Resource) -> ReadableSpan:
    """The SDK's finished span for `span`, ids and times as projected."""
    trace = int(span.trace_id, 16)
    parent = (
        None
        if span.parent_span_id is None
        else SpanContext(trace, int(span.parent_span_id, 16), False, _SAMPLED)
    )
    failed = span.status == "error"
    return ReadableSpan(
        name=span.name,
        context=SpanContext(trace, int(span.span_id, 16), False, _SAMPLED),
        parent=parent,
        resource=resource,
        attributes=span.attributes,
        events=[Event(event.name, event.attributes, event.time_ns) for event in span.events],
        kind=_KINDS[span.kind],
        instrumentation_scope=SCOPE,
        status=Status(StatusCode.ERROR, span.status_message)
        if failed
        else Status(StatusCode.OK if span.status == "ok" else StatusCode.UNSET),
        start_time=span.start_ns,
        end_time=span.end_ns,
    )


def export(spans: Iterable[Span], settings: TraceSettings) -> bool:
    """Send `spans` to the configured receiver, in batches; False if any batch failed."""
    exporter = otlp_exporter(settings)
    resource = keel_resource()
    batch: list[ReadableSpan] = []
    sent = True
    try:
        for span in spans:
            batch.append(readable(span, resource))
            if len(batch) == BATCH:
                sent &= exporter.export(batch) is SpanExportResult.SUCCESS
                batch = []
        if batch:
            sent &= exporter.export(batch) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    return sent
