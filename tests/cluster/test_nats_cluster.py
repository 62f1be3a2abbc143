"""keel on a three-node NATS JetStream cluster (R3) and PostgreSQL, with two brains, two hands
hosts and two gateways as separate processes, all on this machine.

Drill sessions (counted bash calls, `drill/_workload.py`) run while the node leading
`KEEL_WORK` is killed and restarted, then the one leading `KEEL_OUTCOMES`, then a brain, a
hands host and a gateway are killed. Every session must complete with every call answered
exactly once and no effect run twice (`drill.check_log`, `drill/_effects.py`), and every
SSE client, moved to the other gateway, must see each event once with no gap (Last-Event-ID).

And a deployment started with one replica is scaled to three in place.

Printed, not asserted: for each node killed, the time to the first event committed after
the kill, the longest an outcome publisher (keel's own connection options, every node
listed) had no acknowledgement from JetStream, and the longest quiet on the SSE streams.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx2
import msgspec
import nats.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from brain.service import ensure_work_stream
from drill import check_log
from drill._effects import check_effects
from drill._workload import Workload
from hands import LocalBackend
from hands._storage import SandboxStorage
from schemas import TERMINAL_STATUSES, Attention, NatsLinkLog, Replication, connect_nats
from session_store import EventStore, open_store
from tests.backends import PostgresBackend
from tests.brain.processes import BrainProcess
from tests.drill.processes import QUICK
from tests.gateway.processes import GatewayProcess
from tests.hands.processes import remove_sandboxes
from tests.nats_cluster import NatsCluster
from tests.sandboxes import local_backend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

STREAMS = ("KEEL_WORK", "KEEL_OUTCOMES", "OBJ_keel-blobs", "OBJ_keel-checkpoints")
ROOT = Path(__file__).resolve().parents[2]
OUTCOME = "keel.outcomes.cluster-probe"


@pytest.fixture
def sandboxes() -> LocalBackend:
    backend = local_backend()
    assert isinstance(backend, LocalBackend)
    return backend


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    nodes = NatsCluster(tmp_path / "nats")
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


class HandsHost:
    """`python -m hands` with its own id and directory, to kill and start again."""

    def __init__(self, root: Path, host_id: str, env: dict[str, str]) -> None:
        self.host_id = host_id
        self.data_dir = root / host_id
        self.log = root / f"{host_id}.log"
        self.env = {
            **os.environ,
            **env,
            "KEEL_HANDS_ID": host_id,
            "KEEL_HANDS_DIR": str(self.data_dir),
            "KEEL_SANDBOX_BACKEND": "local",
            "KEEL_LOCAL_ISOLATION": "bwrap",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        seen = len(self._output())
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hands"], cwd=ROOT, env=self.env, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 60
        while f"hands host {self.host_id} ready" not in self._output()[seen:]:
            assert self.process.poll() is None, self._output()
            assert time.monotonic() < deadline, self._output()
            time.sleep(0.05)

    def _output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Failover(httpx2.AsyncBaseTransport):
    """A client of several gateways: each request goes to the one that answered last, or
    to the next when it refuses connections (killed)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = [httpx2.URL(url) for url in urls]
        self.inner = httpx2.AsyncHTTPTransport()
        self.current = 0
        self.switches = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        for step in range(len(self.urls)):
            index = (self.current + step) % len(self.urls)
            target = self.urls[index]
            request.url = request.url.copy_with(host=target.host, port=target.port)
            try:
                response = await self.inner.handle_async_request(request)
            except httpx2.ConnectError:
                continue
            if index != self.current:
                self.current = index
                self.switches += 1
            return response
        raise httpx2.ConnectError("no gateway answers", request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class PublishProbe:
    """Publishes to `KEEL_WORK` and `KEEL_OUTCOMES` (for a session that does not exist: a
    brain acks it as gone) with keel's own connection options, noting when JetStream
    acknowledged each: a gap is the outage a gateway or a hands host sees."""

    SUBJECTS: ClassVar = {"KEEL_WORK": "keel.work.cluster-probe", "KEEL_OUTCOMES": OUTCOME}

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: dict[str, list[float]] = {stream: [] for stream in self.SUBJECTS}
        self.stop = asyncio.Event()

    async def run(self) -> None:
        link = NatsLinkLog(logging.getLogger("keel.test"), "the probe")
        nc = await connect_nats(self.url, "probe", link)
        js = nc.jetstream()
        body = msgspec.json.encode(Attention(session_id="cluster-probe", reason="probe"))
        try:
            while not self.stop.is_set():
                await asyncio.gather(*(self._publish(js, stream, body) for stream in self.SUBJECTS))
                await asyncio.sleep(0.05)
        finally:
            await nc.close()

    async def _publish(self, js: JetStreamContext, stream: str, body: bytes) -> None:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js.publish(self.SUBJECTS[stream], body, timeout=1.0)
            self.acked[stream].append(time.time())

    def outage(self, stream: str, at: float) -> float:
        """The longest time without an acknowledgement around `at`."""
        times = [t for t in self.acked[stream] if at - 1 <= t <= at + 20]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def leader_of(js: JetStreamContext, stream: str) -> str:
    info = await js.stream_info(stream)
    assert info.cluster is not None and info.cluster.leader is not None
    return info.cluster.leader


async def until_current(js: JetStreamContext, within_s: float = 60.0) -> None:
    """Until every stream has a leader and every replica is current (a restarted node
    caught up), so the next node killed leaves a quorum."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            infos = [await js.stream_info(name) for name in STREAMS]
            if all(
                i.cluster is not None
                and i.cluster.leader
                and len(i.cluster.replicas or []) == 2
                and all(r.current and not r.offline for r in i.cluster.replicas or [])
                for i in infos
            ):
                return
        except (nats.errors.Error, TimeoutError):
            pass
        assert time.monotonic() < deadline, "the cluster's streams did not catch up"
        await asyncio.sleep(0.2)


def gap_after(times: list[float], at: float) -> float | None:
    index = bisect.bisect_right(times, at)
    return times[index] - at if index < len(times) else None


class Fleet:
    """Two of each keel process, every one given every node of the cluster."""

    def __init__(self, root: Path, store_url: str, nats_url: str) -> None:
        # Replicas unset: 3, because the servers say they are a cluster.
        self.env = {**QUICK, "KEEL_STORE_URL": store_url, "KEEL_NATS_URL": nats_url}
        self.root = root
        self.hands = [HandsHost(root, f"hands-{n}", self.env) for n in ("a", "b")]
        self.brains = [
            BrainProcess(
                store_url=store_url,
                nats_url=nats_url,
                brain_id=f"brain-{n}",
                log_path=root / f"brain-{n}.log",
                extra_env=self.env,
            )
            for n in ("a", "b")
        ]
        self.gateways: list[GatewayProcess] = []

    async def start(self) -> None:
        for host in self.hands:
            await asyncio.to_thread(host.start)
        for brain in self.brains:
            await asyncio.to_thread(brain.start)
        for name in ("a", "b"):
            log = self.root / f"gateway-{name}.log"
            store_url, nats_url = self.env["KEEL_STORE_URL"], self.env["KEEL_NATS_URL"]
            self.gateways.append(
                await asyncio.to_thread(GatewayProcess, store_url, nats_url, log, self.env)
            )

    async def stop(self, sandboxes: LocalBackend) -> None:
        for gateway in self.gateways:
            gateway.kill()
        for brain in self.brains:
            brain.stop()
        for host in self.hands:
            host.stop()
        for host in self.hands:
            await remove_sandboxes(host.data_dir, sandboxes)


async def inflict(
    cluster: NatsCluster, fleet: Fleet, js: JetStreamContext
) -> dict[str, tuple[float, str]]:
    """The faults, one after another, while sessions run: the node leading each stream is
    killed and restarted, then a brain and a hands host are killed and restarted and a
    gateway is killed for good. When each node was killed, by the stream it led."""
    kills: dict[str, tuple[float, str]] = {}
    for stream in ("KEEL_WORK", "KEEL_OUTCOMES"):
        node = cluster.node(await leader_of(js, stream))
        kills[stream] = (time.time(), node.name)
        await asyncio.to_thread(node.kill)
        await asyncio.sleep(4)
        await asyncio.to_thread(node.start)
        await until_current(js)
        await asyncio.sleep(2)
    for process in (fleet.brains[0], fleet.hands[0]):
        process.kill()
        await asyncio.sleep(2)
        await asyncio.to_thread(process.start)
        await asyncio.sleep(2)
    fleet.gateways[0].kill()  # not restarted: its clients go to the other one
    await asyncio.sleep(5)
    return kills


async def drive(workload: Workload, faults: Awaitable[dict[str, tuple[float, str]]]) -> Any:
    """Sessions run through `faults`, then have 150 s to finish."""
    running = asyncio.create_task(workload.run())
    try:
        kills = await faults
        workload.stop_creating.set()
        try:
            await asyncio.wait_for(asyncio.shield(running), 150)
        except TimeoutError:
            workload.give_up.set()
    finally:
        workload.stop_creating.set()
        workload.give_up.set()
        await running
    return kills


async def check(store: EventStore, workload: Workload) -> tuple[list[object], dict[str, str]]:
    """Every invariant of every session's log and stream; each session's status."""
    violations: list[object] = []
    statuses = {}
    for watch in workload.watches:
        info = await store.get_session(watch.session_id)
        statuses[watch.session_id] = info.status
        log, found = await check_log(store, watch.session_id)
        violations += [*found, *check_effects(watch.session_id, log), *watch.violations]
        if info.status in TERMINAL_STATUSES and watch.last_seq != info.head_seq:
            violations.append(f"{watch.session_id}: its stream ended at {watch.last_seq}")
    return violations, statuses


async def report(
    store: EventStore,
    workload: Workload,
    probe: PublishProbe,
    kills: dict[str, tuple[float, str]],
) -> None:
    committed = []
    for watch in workload.watches:
        committed += [r.at for r in (await check_log(store, watch.session_id))[0]]
    committed.sort()
    received = sorted(t for w in workload.watches for t in w.received)
    reconnects = sum(w.reconnects for w in workload.watches)
    print(f"\n{len(workload.watches)} sessions; {reconnects} SSE reconnects")
    for stream, (at, node) in kills.items():
        print(
            f"killed {node}, leader of {stream}: first event committed after "
            f"{_s(gap_after(committed, at))}, first SSE event a client received after "
            f"{_s(gap_after(received, at))}; {stream} took no publish for "
            f"{probe.outage(stream, at):.2f} s (leader change)"
        )


async def test_sessions_ride_through_node_leader_and_process_loss(
    tmp_path: Path,
    cluster: NatsCluster,
    postgres_backend: PostgresBackend,
    sandboxes: LocalBackend,
) -> None:
    store = open_store(postgres_backend.url)
    await store.migrate()
    api_key = (await store.create_api_key("acme")).key
    fleet = Fleet(tmp_path, postgres_backend.url, cluster.url)
    probe = PublishProbe(cluster.url)
    nc = await connect_nats(cluster.url, "test", NatsLinkLog(logging.getLogger(), "the test"))
    js = nc.jetstream()
    try:
        await fleet.start()
        for name in STREAMS:
            assert (await js.stream_info(name)).config.num_replicas == 3, name
        for stream, consumer in (("KEEL_WORK", "brains"), ("KEEL_OUTCOMES", "brain-outcomes")):
            info = await js.consumer_info(stream, consumer)
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2

        failover = Failover([g.url for g in fleet.gateways])
        async with httpx2.AsyncClient(
            base_url=fleet.gateways[0].url,
            headers={"authorization": f"Bearer {api_key}"},
            transport=failover,
        ) as http:
            workload = Workload(http, uuid.uuid4().hex[:8], slots=3)
            probing = asyncio.create_task(probe.run())
            try:

                async def faults() -> dict[str, tuple[float, str]]:
                    await asyncio.sleep(4)  # sessions under way
                    return await inflict(cluster, fleet, js)

                kills = await drive(workload, faults())
            finally:
                probe.stop.set()
                await probing

        violations, statuses = await check(store, workload)
        await report(store, workload, probe, kills)
        assert not violations, violations
        assert len(statuses) >= 3 and set(statuses.values()) == {"completed"}, statuses
        # The streams open on the killed gateway went on, on the other one.
        assert sum(w.reconnects for w in workload.watches) > 0 and failover.switches >= 1
    finally:
        await nc.close()
        await store.close()
        await fleet.stop(sandboxes)


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


async def test_a_one_replica_deployment_is_scaled_in_place_consumers_and_all(
    cluster: NatsCluster,
) -> None:
    """keel started on the cluster with KEEL_NATS_REPLICAS=1, then with 3: its streams and
    buckets are updated in place, keeping their messages, and the durable consumers follow."""
    nc = await connect_nats(cluster.url, "test", NatsLinkLog(logging.getLogger(), "the test"))
    try:
        js = nc.jetstream()
        await ensure_work_stream(js, Replication(1))
        await SandboxStorage.open(nc, js, Replication(1))
        await js.pull_subscribe(
            "keel.work.*", durable="brains", stream="KEEL_WORK", config=ConsumerConfig()
        )
        await js.publish("keel.work.s1", b"{}")
        assert (await js.stream_info("KEEL_WORK")).config.num_replicas == 1

        await ensure_work_stream(js, Replication(3))
        await SandboxStorage.open(nc, js, Replication(3))
        for name in ("KEEL_WORK", "OBJ_keel-blobs", "OBJ_keel-checkpoints"):
            info = await js.stream_info(name)
            assert info.config.num_replicas == 3, name
        assert (await js.stream_info("KEEL_WORK")).state.messages == 1
        deadline = time.monotonic() + 60
        while True:
            consumer = await js.consumer_info("KEEL_WORK", "brains")
            if consumer.cluster is not None and len(consumer.cluster.replicas or []) == 2:
                break
            assert time.monotonic() < deadline, consumer.cluster
            await asyncio.sleep(0.5)
    finally:
        await nc.close()
