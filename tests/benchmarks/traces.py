"""Benchmark traces: what tracing costs a brain, on and off (nothing is asserted).

1. durable tool step, end to end, with tracing off and on in turn (on: exporting over
   OTLP/HTTP to a receiver on loopback that takes and drops), p50/p99, as
   `tests.benchmarks.brain`'s 1;
2. the tracer's work per event (projection, the SDK's span, the batch processor's queue), on
   the brain's event loop but off its steps' path, from a long log fed as live runs feed it;
3. `keel trace`'s projection of a long log: events and spans per second;
4. loading the OpenTelemetry SDK, once at the start of a brain that traces (one that does
   not never loads it).

Run from the repository root:

    python -m tests.benchmarks.traces
    python -m tests.benchmarks.traces --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from schemas import (
    ModelResponse,
    Recorded,
    SessionStatus,
    TextBlock,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    Usage,
    UserMessage,
)
from tests.benchmarks.brain import in_process_brain, ms, percentile, rig, step_spec
from tests.traces.logs import LogBuilder, MemoryReader, created
from traces import TraceSettings, project
from traces._follower import LogFollower
from traces.export import keel_resource, readable


class Sink:
    """An OTLP/HTTP receiver on loopback that answers 200 and keeps only a count."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests = 0


@contextlib.contextmanager
def otlp_sink() -> Iterator[Sink]:
    sink = Sink("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            sink.requests += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sink.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


async def steps(turns: int, traces: TraceSettings) -> list[float]:
    async with rig("local") as running, in_process_brain(running, traces=traces):
        await running.finished(await running.session(step_spec(3)))  # warm up
        session_id = await running.session(step_spec(turns))
        await running.finished(session_id)
        log = await running.store.read(session_id)
    responses = [r.at for r in log if isinstance(r.event, ModelResponse)]
    return [b - a for a, b in itertools.pairwise(responses[1:])]


async def step_cost(turns: int, rounds: int) -> None:
    """Off and on in turn, `rounds` times, so a slower minute of a shared machine weighs on
    both alike."""
    timed: dict[str, list[float]] = {"off": [], "on": []}
    with otlp_sink() as sink:
        for _ in range(rounds):
            timed["off"] += await steps(turns, TraceSettings())
            timed["on"] += await steps(turns, TraceSettings(otlp_endpoint=sink.url))
    assert sink.requests, "the tracing brain sent nothing"
    shown = ", ".join(
        f"{name}: p50 {ms(statistics.median(samples))}, p99 {ms(percentile(samples, 0.99))}"
        for name, samples in timed.items()
    )
    print(f"1. durable tool step with tracing {shown} (over {len(timed['on'])} steps each)")


def long_log(turns: int) -> list[Recorded]:
    """A session of `turns` turns, each a model call, a tool call and an answer."""
    log = LogBuilder(step_s=0.01)
    log.add(created())
    for turn in range(turns):
        call_id = f"c{turn}"
        log.add(UserMessage(text=f"task {turn}"))
        log.add(SessionStatus(status="running"))
        usage = Usage(input_tokens=900, output_tokens=40)
        log.add(
            ModelResponse(content=[], stop_reason="tool_use", usage=usage, duration_ms=800.0),
            ToolRequested(call_id=call_id, name="bash", input={"command": "make test"}),
        )
        log.add(ToolDispatched(call_id=call_id, sandbox_id="sbx_1"))
        log.add(ToolResult(call_id=call_id, output="ok", duration_ms=120.0))
        log.add(ModelResponse(content=[TextBlock(text="done")], stop_reason="end_turn"))
        log.add(SessionStatus(status="idle", reason="end_turn"))
    return log.records


class _Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


async def tracer_cost(turns: int) -> None:
    log = long_log(turns)
    # A queue for every span: fed in one go, they would outrun the default one (2048).
    processor = BatchSpanProcessor(_Dropped(), max_queue_size=max(len(log), 2048))
    resource = keel_resource()
    exported = 0

    def export(span: Any) -> None:
        nonlocal exported
        exported += 1
        processor.on_end(readable(span, resource))

    follower = LogFollower(MemoryReader(log), export)
    started = time.perf_counter()
    for recorded in log:  # one commit per event, as a run commits them
        await follower.saw("ses_bench", 1, [recorded], committed=True)
    spent = time.perf_counter() - started
    processor.shutdown()  # type: ignore[no-untyped-call]
    print(
        f"2. tracer per event (projection, SDK span, batch queue): "
        f"{spent / len(log) * 1e6:.1f} us over {len(log)} events ({exported} spans)"
    )


def replay_rate(turns: int) -> None:
    log = long_log(turns)
    started = time.perf_counter()
    spans = project("ses_bench", log)
    spent = time.perf_counter() - started
    print(
        f"3. keel trace projection: {len(log) / spent:,.0f} events/s, "
        f"{len(spans) / spent:,.0f} spans/s ({len(log)} events, {len(spans)} spans)"
    )


def sdk_load() -> None:
    probe = (
        "import time, brain.service\n"
        "started = time.perf_counter()\n"
        "import traces.live\n"
        "print(time.perf_counter() - started)\n"
    )
    loads = [
        float(
            subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(3)
    ]
    print(
        f"4. loading the SDK at a tracing brain's start: {ms(statistics.median(loads))} "
        "(a brain that does not trace: none)"
    )


async def main(quick: bool) -> None:
    await step_cost(30 if quick else 150, 1 if quick else 4)
    await tracer_cost(50 if quick else 2000)
    replay_rate(50 if quick else 2000)
    sdk_load()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        asyncio.run(main(arguments.quick))
