"""Benchmark the hands: print what a tool call and a sandbox cost, per backend.

Figures, each on one line (nothing is asserted):

1. round trip of a trivial call (read_file of a small file): from a NATS client sending the
   call to the outcome arriving from JetStream, p50/p90/p99;
2. cold start: provisioning request to the first call served, p50 (fresh sandbox each time);
3. warm pool: provisioning request answered from the pool, and to the first call served;
4. checkpoint + restore of a 10 MB workspace (pack + object store put; get + unpack).

Starts its own nats-server on a free loopback port and an in-process hands host. Run from the
repository root:

    python -m tests.benchmarks.hands --backend local
    python -m tests.benchmarks.hands --backend docker --quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from hands import HandsHost, HandsSettings
from hands.__main__ import make_backend
from hands._checkpoint import pack, unpack
from schemas import CallRequest, ToolOutcome, new_id, outcome_subject
from tests.hands.client import HandsTestClient
from tests.nats_server import NatsServer


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def timed(operation: Callable[[], Awaitable[object]], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await operation()
        samples.append(time.perf_counter() - started)
    return samples


async def round_trip(client: HandsTestClient, sandbox: str, session: str, times: int) -> None:
    await client.call(sandbox, session, "write_file", {"path": "small.txt", "content": "hi\n"})
    outcomes = await client.js.subscribe(outcome_subject(session), ordered_consumer=True)
    while True:  # skip what is already in the stream
        try:
            await outcomes.next_msg(timeout=0.2)
        except Exception:
            break

    async def one_call() -> None:
        call_id = new_id("call")
        request = CallRequest(
            call_id=call_id, session_id=session, name="read_file", input={"path": "small.txt"}
        )
        send = client.send(sandbox, request)
        arrived = outcomes.next_msg(timeout=10)
        _, message = await asyncio.gather(send, arrived)
        assert msgspec.json.decode(message.data, type=ToolOutcome).call_id == call_id

    await timed(one_call, 50)  # warm-up
    samples = await timed(one_call, times)
    print(
        f"1. round trip, read_file of a small file, NATS call -> JetStream outcome ({times}): "
        f"p50 {ms(statistics.median(samples))}, p90 {ms(percentile(samples, 0.9))}, "
        f"p99 {ms(percentile(samples, 0.99))}"
    )
    await outcomes.unsubscribe()


async def cold_start(client: HandsTestClient, times: int) -> None:
    async def provision_and_call() -> None:
        session = new_id("ses")
        sandbox = (await client.provision(session)).sandbox_id
        await client.call(sandbox, session, "bash", {"command": "true"})

    samples = await timed(provision_and_call, times)
    print(
        f"2. cold start, provision -> first call served ({times}): "
        f"p50 {ms(statistics.median(samples))}, p90 {ms(percentile(samples, 0.9))}"
    )


async def warm_start(host: HandsHost, client: HandsTestClient, times: int) -> None:
    provisions, first_calls = [], []
    for _ in range(times):
        await host.wait_for_warm()
        session = new_id("ses")
        started = time.perf_counter()
        sandbox = (await client.provision(session)).sandbox_id
        provisions.append(time.perf_counter() - started)
        await client.call(sandbox, session, "bash", {"command": "true"})
        first_calls.append(time.perf_counter() - started)
    print(
        f"3. warm pool ({times}): provisioning answered p50 {ms(statistics.median(provisions))}; "
        f"to the first call served p50 {ms(statistics.median(first_calls))}"
    )


async def checkpoint_restore(client: HandsTestClient, times: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        workspace = Path(directory) / "workspace"
        for i in range(100):
            (workspace / f"dir{i % 10}").mkdir(parents=True, exist_ok=True)
            # Half random (incompressible), half text: 100 KB a file, 10 MB in all.
            content = os.urandom(50_000) + (f"line {i}\n" * 6000).encode()[:50_000]
            (workspace / f"dir{i % 10}" / f"file{i}.bin").write_bytes(content)
        bucket = await client.js.object_store("keel-checkpoints")
        saves, restores = [], []
        for round_ in range(times):
            started = time.perf_counter()
            digest, data = await asyncio.to_thread(pack, workspace)
            await bucket.put(f"{digest}-{round_}", data)
            saves.append(time.perf_counter() - started)
            target = Path(directory) / f"restored{round_}"
            target.mkdir()
            started = time.perf_counter()
            stored = (await bucket.get(f"{digest}-{round_}")).data
            assert stored is not None
            await asyncio.to_thread(unpack, stored, target)
            restores.append(time.perf_counter() - started)
        print(
            f"4. checkpoint of a 10 MB workspace ({times}, {len(data) / 1e6:.1f} MB packed): "
            f"pack + store p50 {ms(statistics.median(saves))}; "
            f"fetch + unpack p50 {ms(statistics.median(restores))}"
        )


async def main(backend_name: str, quick: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        server = NatsServer(Path(directory) / "nats")
        server.start()
        try:
            settings = HandsSettings(
                nats_url=server.url,
                data_dir=Path(directory) / "hands",
                backend=backend_name,  # type: ignore[arg-type]
                host_id=new_id("bench"),
            )
            print(f"keel hands benchmark ({'quick' if quick else 'full'}): {backend_name} backend")
            print(f"machine: os.cpu_count()={os.cpu_count()}")
            host = HandsHost(settings, make_backend(settings))
            await host.start()
            client = await HandsTestClient.connect(server.url)
            try:
                session = new_id("ses")
                sandbox = (await client.provision(session)).sandbox_id
                await round_trip(client, sandbox, session, 200 if quick else 1000)
                await cold_start(client, 5 if quick else 20)
                await checkpoint_restore(client, 3 if quick else 10)
            finally:
                await host.close(destroy_sandboxes=True)
            warm = HandsHost(msgspec.structs.replace(settings, warm_pool=2), host.backend)
            await warm.start()
            try:
                await warm_start(warm, client, 5 if quick else 20)
            finally:
                await warm.close(destroy_sandboxes=True)
                await client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["local", "docker"], required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.backend, args.quick))
