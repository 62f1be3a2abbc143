"""keel's spans as the OpenTelemetry SDK sends them: ids, times and attributes as projected,
and the same bytes on the wire from any projection of the same log."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import SpanKind, StatusCode

from schemas import SettingsError, settings_from_env
from tests.golden.golden import read_log
from traces import TraceSettings, project
from traces.export import keel_resource, otlp_exporter, readable


def test_a_span_keeps_its_projected_ids_times_and_attributes() -> None:
    spans = project("approval", read_log("approval"))
    resource = keel_resource()
    for span in spans:
        sdk = readable(span, resource)
        assert sdk.context is not None
        assert f"{sdk.context.trace_id:032x}" == span.trace_id
        assert f"{sdk.context.span_id:016x}" == span.span_id
        assert sdk.context.trace_flags.sampled
        parent = None if sdk.parent is None else f"{sdk.parent.span_id:016x}"
        assert parent == span.parent_span_id
        assert (sdk.start_time, sdk.end_time) == (span.start_ns, span.end_ns)
        assert dict(sdk.attributes or {}) == span.attributes
        assert sdk.kind is (SpanKind.CLIENT if span.kind == "client" else SpanKind.INTERNAL)
        assert sdk.status.status_code is (
            StatusCode.ERROR if span.status == "error" else StatusCode.UNSET
        )


def test_the_same_log_gives_the_same_otlp_bytes() -> None:
    def wire() -> list[bytes]:
        resource = keel_resource()
        spans = project("coding", read_log("coding"))
        request = encode_spans([readable(span, resource) for span in spans])
        return [
            span.SerializeToString(deterministic=True)
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    sent = wire()
    assert len(sent) == 14 and sent == wire()


def test_the_resource_is_keel_unless_the_environment_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert keel_resource().attributes["service.name"] == "keel"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "keel-prod")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    resource = keel_resource()
    assert resource.attributes["service.name"] == "keel-prod"
    assert resource.attributes["deployment.environment"] == "prod"


def test_a_brain_that_does_not_trace_never_loads_the_sdk() -> None:
    probe = (
        "import sys, asyncio\n"
        "import brain.__main__, brain.service, traces\n"
        "from brain.settings import BrainSettings\n"
        "assert not BrainSettings.from_env().traces.exporting\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry.sdk')]\n"
        "assert not loaded, loaded\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("variables", "endpoint", "exporter"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318/"},
            "http://otel:4318/v1/traces",
            "http",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel:9999/spans",
            },
            "http://otel:9999/spans",
            "http",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            "http://otel:4317",
            "grpc",
        ),
    ],
)
def test_the_endpoint_and_transport_are_the_standard_variables(
    variables: dict[str, str], endpoint: str, exporter: str
) -> None:
    settings = settings_from_env(TraceSettings, variables)
    assert settings.exporting and settings.traces_endpoint == endpoint
    made = otlp_exporter(settings)
    assert type(made).__module__.split(".")[4] == exporter
    made.shutdown()


def test_no_endpoint_or_a_disabled_sdk_exports_nothing() -> None:
    assert not settings_from_env(TraceSettings, {}).exporting
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_SDK_DISABLED": "true"}
    assert not settings_from_env(TraceSettings, disabled).exporting
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        settings_from_env(TraceSettings, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
