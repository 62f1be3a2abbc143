"""Sandboxes die and are replaced; hosts die and are replaced; no call ever runs twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import pytest

from brain.hands_client import HandsClient, ProvisionFailed, ask_to_provision
from hands import HandsHost, HandsSettings
from hands._backend import SandboxBackend, SandboxDirs, SandboxRecord
from hands._client import ExecutorCall, ExecutorClient
from hands._records import CallRecords
from schemas import (
    CallRequest,
    ProvisionRequest,
    SandboxSpec,
    ToolOutcome,
    new_id,
)
from tests.hands.client import HandsTestClient

ROOT = Path(__file__).resolve().parents[2]
SESSION = "ses_life"


async def test_a_killed_sandbox_is_reported_and_replaced_from_its_checkpoint(
    host: HandsHost, client: HandsTestClient, backend: SandboxBackend
) -> None:
    sandbox = (await client.provision(SESSION)).sandbox_id
    wrote = await client.call(sandbox, SESSION, "write_file", {"path": "keep.txt", "content": "v1"})
    assert wrote.checkpoint
    call_id = new_id("call")
    request = CallRequest(
        call_id=call_id, session_id=SESSION, name="bash", input={"command": "sleep 30"}
    )
    assert not (await client.send(sandbox, request)).error
    await asyncio.sleep(0.5)
    await backend.kill(host.sandboxes[sandbox].record)

    lost = await client.outcome(SESSION, call_id)
    assert lost.sandbox_lost and lost.outcome == "unknown" and lost.is_error
    assert lost.checkpoint == wrote.checkpoint
    # Anything sent to the dead sandbox is answered, not left hanging.
    late = await client.call(sandbox, SESSION, "read_file", {"path": "keep.txt"})
    assert late.sandbox_lost

    replacement = await client.provision(SESSION, checkpoint=lost.checkpoint)
    assert replacement.sandbox_id != sandbox and replacement.checkpoint == wrote.checkpoint
    kept = await client.call(replacement.sandbox_id, SESSION, "read_file", {"path": "keep.txt"})
    assert kept.output == "v1"


async def test_the_same_call_id_runs_once(host: HandsHost, client: HandsTestClient) -> None:
    sandbox = (await client.provision(SESSION)).sandbox_id
    request = CallRequest(
        call_id=new_id("call"),
        session_id=SESSION,
        name="bash",
        input={"command": "echo ran >> counter; sleep 0.5; wc -l < counter"},
    )
    first, second = await asyncio.gather(
        client.send(sandbox, request), client.send(sandbox, request)
    )
    assert sorted([first.duplicate, second.duplicate]) == [False, True]
    outcome = await client.outcome(SESSION, request.call_id)
    assert outcome.output.startswith("1\n")
    again = await client.send(sandbox, request)  # long after: answered from the kept outcome
    assert again.duplicate
    count = await client.call(sandbox, SESSION, "read_file", {"path": "counter"})
    assert count.output == "ran\n"
    assert await client.outcomes(SESSION, request.call_id) == 1


async def test_outcomes_survive_a_deleted_stream(host: HandsHost, client: HandsTestClient) -> None:
    """Someone deletes the outcome stream: the host makes it again and still delivers."""
    sandbox = (await client.provision(SESSION)).sandbox_id
    await client.js.delete_stream("KEEL_OUTCOMES")
    request = CallRequest(
        call_id=new_id("call"),
        session_id=SESSION,
        name="bash",
        input={"command": "echo still here"},
    )
    await client.send(sandbox, request)
    for _ in range(100):
        try:
            await client.js.stream_info("KEEL_OUTCOMES")
            break
        except nats.js.errors.NotFoundError:
            await asyncio.sleep(0.05)
    outcome = await client.outcome(SESSION, request.call_id)
    assert "still here" in outcome.output


async def test_cancel_kills_the_running_command(host: HandsHost, client: HandsTestClient) -> None:
    sandbox = (await client.provision(SESSION)).sandbox_id
    call_id = new_id("call")
    request = CallRequest(
        call_id=call_id, session_id=SESSION, name="bash", input={"command": "sleep 30"}
    )
    await client.send(sandbox, request)
    await asyncio.sleep(0.3)
    await client.cancel(sandbox, call_id)
    outcome = await asyncio.wait_for(client.outcome(SESSION, call_id), 10)
    assert outcome.is_error and "[cancelled]" in outcome.output


async def test_bad_calls_get_clear_error_outcomes(host: HandsHost, client: HandsTestClient) -> None:
    sandbox = (await client.provision(SESSION)).sandbox_id
    unknown = await client.call(sandbox, SESSION, "rm_rf", {})
    assert unknown.is_error and "unknown tool 'rm_rf'" in unknown.output
    missing = await client.call(sandbox, SESSION, "bash", {})
    assert missing.is_error and "command" in missing.output
    wrong = await client.call(sandbox, SESSION, "read_file", {"path": 7})
    assert wrong.is_error and "Expected `str`" in wrong.output
    extra = await client.call(sandbox, SESSION, "grep", {"pattern": "x", "recursive": True})
    assert extra.is_error and "recursive" in extra.output
    reply = await client.nc.request(f"keel.sandbox.{sandbox}.call", b"{not json", timeout=5)
    assert b"malformed call" in reply.data
    huge = CallRequest(
        call_id=new_id("call"),
        session_id=SESSION,
        name="write_file",
        input={"path": "big", "content": "x" * (client.nc.max_payload + 1)},
    )
    with pytest.raises(nats.errors.MaxPayloadError):
        await client.send(sandbox, huge)
    bad_ids = CallRequest(call_id="a b", session_id="ses.*", name="bash", input={})
    assert "invalid call or session id" in (await client.send(sandbox, bad_ids)).error
    # Nothing of that broke the host.
    assert (await client.call(sandbox, SESSION, "bash", {"command": "echo ok"})).exit_code == 0


async def test_provisioning_from_a_missing_checkpoint_fails_cleanly(
    host: HandsHost, client: HandsTestClient, settings: HandsSettings
) -> None:
    answer = await ask_to_provision(
        client.nc,
        msgspec.json.encode(ProvisionRequest(session_id=SESSION, checkpoint="0" * 64)),
        timeout_s=30,
        silence_s=30,
    )
    assert "no workspace checkpoint" in answer.error and not answer.sandbox_id
    assert host.sandboxes == {}
    assert list((settings.data_dir / "sandboxes").iterdir()) == []


async def test_closing_while_the_warm_pool_fills_leaves_nothing_behind(
    settings: HandsSettings, backend: SandboxBackend
) -> None:
    host = HandsHost(msgspec.structs.replace(settings, warm_pool=2), backend)
    await host.start()
    await asyncio.sleep(0.05)  # the pool is being filled
    await host.close(destroy_sandboxes=True)
    assert list((settings.data_dir / "sandboxes").iterdir()) == []
    # Nothing of this host's is left running either: a new host with its id finds no orphan.
    assert await backend.reap_unknown(settings.host_id, set()) == 0


async def test_closing_while_slow_starts_outlast_repeated_cancels_leaves_nothing_behind(
    settings: HandsSettings, backend: SandboxBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closing host cancels its tasks again every half second until they end; a sandbox
    whose start takes longer than that (a Docker engine under load) is still removed."""
    start = backend.start

    async def slow_start(record: SandboxRecord, dirs: SandboxDirs) -> str:
        await asyncio.sleep(1.2)
        return await start(record, dirs)

    monkeypatch.setattr(backend, "start", slow_start)
    host = HandsHost(msgspec.structs.replace(settings, warm_pool=2), backend)
    await host.start()
    await asyncio.sleep(0.05)
    await host.close(destroy_sandboxes=True)
    assert list((settings.data_dir / "sandboxes").iterdir()) == []
    assert await backend.reap_unknown(settings.host_id, set()) == 0


async def test_closing_while_a_sandbox_is_half_served_removes_it_however_slow_the_removal(
    settings: HandsSettings,
    backend: SandboxBackend,
    client: HandsTestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A provisioning cut off between making a sandbox and serving it removes the sandbox,
    though the host cancels its tasks again every half second and the removal is slower."""
    remove = backend.remove
    serving = asyncio.Event()

    async def slow_remove(record: SandboxRecord) -> None:
        await asyncio.sleep(1.2)
        await remove(record)

    async def never_served(sandbox: object) -> None:
        serving.set()
        await asyncio.sleep(60)

    monkeypatch.setattr(backend, "remove", slow_remove)
    host = HandsHost(msgspec.structs.replace(settings, warm_pool=0), backend)
    await host.start()
    assert host._provisioner is not None
    monkeypatch.setattr(host._provisioner._subjects, "serve", never_served)
    asking = asyncio.ensure_future(client.provision(SESSION))
    await asyncio.wait_for(serving.wait(), timeout=30)
    await host.close(destroy_sandboxes=True)
    asking.cancel()
    await asyncio.gather(asking, return_exceptions=True)
    assert list((settings.data_dir / "sandboxes").iterdir()) == []
    assert await backend.reap_unknown(settings.host_id, set()) == 0


async def test_warm_pool_serves_provisioning(
    settings: HandsSettings, backend: SandboxBackend, client: HandsTestClient
) -> None:
    host = HandsHost(msgspec.structs.replace(settings, warm_pool=1), backend)
    await host.start()
    try:
        await asyncio.wait_for(host.wait_for_warm(), 30)
        [warm] = [directory.name for directory in host.sandboxes_root.iterdir()]
        reply = await client.provision(SESSION)
        assert reply.sandbox_id == warm
        outcome = await client.call(warm, SESSION, "bash", {"command": "pwd"})
        assert outcome.output.startswith("/workspace")
    finally:
        await host.close(destroy_sandboxes=True)


# -- a hands host that dies --------------------------------------------------------------


@pytest.fixture
def host_process(settings: HandsSettings, backend: SandboxBackend) -> Iterator[object]:
    """Start `python -m hands` processes on the test's NATS and data directory."""
    children: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "KEEL_NATS_URL": settings.nats_url,
            "KEEL_HANDS_DIR": str(settings.data_dir),
            "KEEL_SANDBOX_BACKEND": settings.backend,
            "KEEL_HANDS_ID": settings.host_id,
            "KEEL_LOCAL_ISOLATION": settings.local_isolation or "bwrap",
            "KEEL_SANDBOX_IMAGE": settings.docker_image,
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "hands"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        children.append(child)
        assert child.stdout is not None
        for line in child.stdout:
            if "ready" in line:
                return child
        raise AssertionError(f"the hands host did not start: {child.wait()}")

    yield start
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    # The killed hosts' sandboxes outlive them by design: remove them here.
    for path in (settings.data_dir / "sandboxes").glob("*/record.json"):
        record = msgspec.json.decode(path.read_bytes(), type=SandboxRecord)
        asyncio.run(backend.remove(record))


async def test_provisioning_by_a_host_that_dies_with_the_request_fails_fast_and_is_asked_again(
    host_process,
    client: HandsTestClient,  # type: ignore[no-untyped-def]
) -> None:
    """The host that took the request is frozen and then killed: no answer will ever come,
    and the asker knows it from the host's silence, not after the whole provisioning
    timeout; asked again, the next host answers."""
    frozen = await asyncio.to_thread(host_process)
    frozen.send_signal(signal.SIGSTOP)
    hands = HandsClient(client.nc, provision_timeout_s=120, provision_silence_s=2)
    started = time.monotonic()
    asking = asyncio.ensure_future(hands.provision(SESSION, SandboxSpec(), None))
    await asyncio.sleep(0.5)
    frozen.send_signal(signal.SIGKILL)
    frozen.wait()
    with pytest.raises(
        ProvisionFailed,
        match="nothing was heard from any hands host about the provisioning for 2 s",
    ):
        await asking
    assert time.monotonic() - started < 10
    await asyncio.to_thread(host_process)
    sandbox = (await hands.provision(SESSION, SandboxSpec(), None)).sandbox_id
    assert (await client.call(sandbox, SESSION, "bash", {"command": "echo ok"})).exit_code == 0


async def test_a_provisioning_slower_than_the_silence_limit_is_waited_for(
    settings: HandsSettings,
    backend: SandboxBackend,
    client: HandsTestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cold start on a loaded machine may take long; the host's progress notes keep the
    asker waiting for it."""
    start = backend.start

    async def slow_start(record: SandboxRecord, dirs: SandboxDirs) -> str:
        await asyncio.sleep(3.5)
        return await start(record, dirs)

    monkeypatch.setattr(backend, "start", slow_start)
    host = HandsHost(settings, backend)
    await host.start()
    try:
        hands = HandsClient(client.nc, provision_timeout_s=60, provision_silence_s=1.5)
        sandbox = (await hands.provision(SESSION, SandboxSpec(), None)).sandbox_id
        assert sandbox in host.sandboxes
    finally:
        await host.close(destroy_sandboxes=True)


async def test_a_killed_host_is_replaced_and_nothing_runs_twice(
    host_process,
    client: HandsTestClient,
    backend: SandboxBackend,
    settings: HandsSettings,  # type: ignore[no-untyped-def]
) -> None:
    first = await asyncio.to_thread(host_process)
    sandbox = (await client.provision(SESSION)).sandbox_id
    done = await client.call(sandbox, SESSION, "write_file", {"path": "a", "content": "a"})
    request = CallRequest(
        call_id=new_id("call"),
        session_id=SESSION,
        name="bash",
        input={"command": "echo ran >> counter; sleep 2; echo finished"},
    )
    await client.send(sandbox, request)
    await asyncio.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    # A sandbox record whose sandbox is already gone: the next host must clean it up.
    dead = settings.data_dir / "sandboxes" / "sbx_dead"
    dead.mkdir()
    (dead / "record.json").write_bytes(
        msgspec.json.encode(
            SandboxRecord(
                sandbox_id="sbx_dead",
                session_id=SESSION,
                host_id="gone",
                backend=settings.backend,
                created_at=0.0,
                handle="sbx_dead",
            )
        )
    )

    await asyncio.to_thread(host_process)  # adopts the sandbox and asks for its calls
    outcome = await client.outcome(SESSION, request.call_id)
    assert not outcome.is_error and "finished" in outcome.output
    # An outcome published before the crash is still there to collect.
    assert (await client.outcome(SESSION, done.call_id)).checkpoint == done.checkpoint
    again = await client.send(sandbox, request)
    assert again.duplicate
    count = await client.call(sandbox, SESSION, "read_file", {"path": "counter"})
    assert count.output == "ran\n"
    assert await client.outcomes(SESSION, request.call_id) == 1
    # What the dead host left that could not be adopted is removed, not orphaned.
    assert {p.name for p in (settings.data_dir / "sandboxes").iterdir()} == {sandbox}


async def test_a_new_host_removes_orphans_that_have_no_record(
    settings: HandsSettings, backend: SandboxBackend, tmp_path: Path
) -> None:
    """A host that died between starting a sandbox and recording it leaves an orphan with
    its labels (Docker) or cgroup (local), and its directory with no record: its next
    incarnation removes both, while another host's sandbox on the same machine is left
    alone."""
    dirs = SandboxDirs(settings.data_dir / "sandboxes", "sbx_orphan")
    dirs.workspace.mkdir(parents=True)
    dirs.ipc.mkdir()
    await backend.prepare(dirs)
    others = SandboxDirs(tmp_path / "elsewhere", "sbx_other")
    others.workspace.mkdir(parents=True)
    others.ipc.mkdir()
    await backend.prepare(others)
    records = []
    for owner, place in ((settings.host_id, dirs), ("another-host", others)):
        record = SandboxRecord(
            sandbox_id=place.root.name,
            session_id=SESSION,
            host_id=owner,
            backend=settings.backend,
            created_at=0.0,
        )
        records.append(msgspec.structs.replace(record, handle=await backend.start(record, place)))
        await (await ExecutorClient.connect(place.socket)).close()  # it is up
    orphan, bystander = records
    host = HandsHost(settings, backend)
    await host.start()
    try:
        assert not await backend.alive(orphan)
        assert not dirs.root.exists()
        assert await backend.alive(bystander)
    finally:
        await host.close(destroy_sandboxes=True)
        for record in records:
            await backend.remove(record)


async def test_an_adopting_host_finishes_what_its_predecessor_recorded(
    settings: HandsSettings, backend: SandboxBackend, client: HandsTestClient
) -> None:
    """A host killed at the wrong moment leaves a call recorded but never sent, or an
    outcome recorded but never published: the next host ends the first as `unknown`
    (never running it) and publishes the second."""
    first = HandsHost(settings, backend)
    await first.start()
    second: HandsHost | None = None
    try:
        sandbox = (await client.provision(SESSION)).sandbox_id
        ran = await client.call(sandbox, SESSION, "bash", {"command": "echo ran >> count"})
        dirs = first.sandboxes[sandbox].dirs
        await first.close()  # the sandbox keeps running
        records = CallRecords(dirs.calls)
        unsent = CallRequest(
            call_id=new_id("call"), session_id=SESSION, name="bash", input={"command": "touch x"}
        )
        records.start(unsent)
        unpublished = ToolOutcome(
            call_id=new_id("call"), session_id=SESSION, sandbox_id=sandbox, output="it ran"
        )
        records.start(CallRequest(call_id=unpublished.call_id, session_id=SESSION, name="bash"))
        records.finish(unpublished)

        second = HandsHost(settings, backend)
        await second.start()
        never = await client.outcome(SESSION, unsent.call_id)
        assert never.is_error and never.outcome == "unknown" and "never reached" in never.output
        assert await client.outcome(SESSION, unpublished.call_id) == unpublished
        assert (await client.send(sandbox, unsent)).duplicate
        # The executor refuses a call_id it has seen, as defence in depth: one it ran, and
        # one the host collected before it arrived (as if still on the dead host's connection).
        executor = await ExecutorClient.connect(dirs.socket)
        try:
            for call_id, command in (
                (ran.call_id, "echo ran >> count"),
                (unsent.call_id, "touch x"),
            ):
                late = await executor.call(
                    ExecutorCall(call_id=call_id, tool="bash", input={"command": command})
                )
                assert late.is_error and late.unknown, late
        finally:
            await executor.close()
        assert (await client.call(sandbox, SESSION, "list_files", {})).output == "count"
        count = await client.call(sandbox, SESSION, "read_file", {"path": "count"})
        assert count.output == "ran\n"
    finally:
        for host in (first, second):
            if host is not None:
                await host.close(destroy_sandboxes=True)
        for path in (settings.data_dir / "sandboxes").glob("*/record.json"):
            await backend.remove(msgspec.json.decode(path.read_bytes(), type=SandboxRecord))


async def test_sandboxes_of_an_older_layout_are_removed_not_adopted(
    settings: HandsSettings, backend: SandboxBackend, client: HandsTestClient
) -> None:
    """Their executors speak another protocol (and kept call records in reach of the
    sandbox): a new host removes them instead of adopting them."""
    first = HandsHost(settings, backend)
    await first.start()
    sandbox = (await client.provision(SESSION)).sandbox_id
    dirs = first.sandboxes[sandbox].dirs
    record = first.sandboxes[sandbox].record
    await first.close()
    # As a host of the first layout wrote it: without the field.
    stored = msgspec.json.decode(dirs.record.read_bytes())
    del stored["layout"]
    dirs.record.write_bytes(msgspec.json.encode(stored))
    second = HandsHost(settings, backend)
    try:
        await second.start()
        assert sandbox not in second.sandboxes
        assert not await backend.alive(record)
        assert not dirs.root.exists()
    finally:
        await second.close(destroy_sandboxes=True)
        await backend.remove(record)
