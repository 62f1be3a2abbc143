"""A span as keel projects it from a session's log: plain data, free of OpenTelemetry's SDK.

Ids are hex strings (32 digits for a trace, 16 for a span) and times are unix nanoseconds,
as OTLP has them; `traces.export` turns a `Span` into the SDK's span to send it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

# What OTLP can carry as an attribute value that keel uses.
AttributeValue = str | bool | int | float | list[str]
SpanKind = Literal["internal", "client"]
SpanStatus = Literal["unset", "ok", "error"]


class SpanEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened at one moment of a span (a dispatch, a budget reached)."""

    name: str
    time_ns: int
    attributes: dict[str, AttributeValue] = {}


class Span(msgspec.Struct, frozen=True, kw_only=True):
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    attributes: dict[str, AttributeValue]
    events: list[SpanEvent] = []
    status: SpanStatus = "unset"
    status_message: str = ""
