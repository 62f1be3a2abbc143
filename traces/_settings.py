"""Whether traces are exported: the standard OpenTelemetry variables, read once at start.

Only whether to trace is decided here; where and how to send (protocol, headers, timeouts,
batching, the resource) the SDK reads from the rest of the `OTEL_*` variables itself.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from schemas import setting

# The OTLP transports the official Python exporters offer.
Protocol = Literal["http/protobuf", "grpc"]


class TraceSettings(msgspec.Struct, frozen=True, kw_only=True):
    otlp_endpoint: Annotated[
        str | None,
        setting(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "an OTLP receiver: when set, the brain exports a trace of every session turn "
            "(the SDK's other OTEL_* variables apply)",
        ),
    ] = None
    otlp_traces_endpoint: Annotated[
        str | None,
        setting(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "the same for traces alone, as a full URL (it wins over the one above)",
        ),
    ] = None
    otlp_protocol: Annotated[
        Protocol | None,
        setting("OTEL_EXPORTER_OTLP_PROTOCOL", "how to send OTLP", shown="http/protobuf"),
    ] = None
    otlp_traces_protocol: Annotated[
        Protocol | None,
        setting("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "the same for traces alone"),
    ] = None
    sdk_disabled: Annotated[
        bool,
        setting("OTEL_SDK_DISABLED", "true: no traces, whatever the endpoint", shown="false"),
    ] = False

    @property
    def protocol(self) -> Protocol:
        return self.otlp_traces_protocol or self.otlp_protocol or "http/protobuf"

    @property
    def traces_endpoint(self) -> str | None:
        """Where spans go, as the OTLP exporters' specification composes it: the traces
        endpoint as it is, else the endpoint (with its signal path over HTTP)."""
        if self.otlp_traces_endpoint:
            return self.otlp_traces_endpoint
        if not self.otlp_endpoint or self.protocol == "grpc":
            return self.otlp_endpoint
        return f"{self.otlp_endpoint.rstrip('/')}/v1/traces"

    @property
    def exporting(self) -> bool:
        return not self.sdk_disabled and bool(self.otlp_endpoint or self.otlp_traces_endpoint)
