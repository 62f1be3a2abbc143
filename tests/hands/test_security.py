"""What a sandboxed command must not be able to do, on every backend."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import msgspec
import pytest

from hands import HandsHost, HandsSettings
from hands._backend import SandboxBackend
from schemas import SandboxSpec
from tests.hands.client import HandsTestClient
from tests.nats_server import NatsServer

SECRET = "keel-fake-secret-4f1d2c"


@pytest.fixture(autouse=True)
def secret_in_host_environment() -> Iterator[None]:
    """The host process carries a credential; no sandbox may ever see it."""
    os.environ["KEEL_TEST_SECRET"] = SECRET
    try:
        yield
    finally:
        del os.environ["KEEL_TEST_SECRET"]


async def bash(client: HandsTestClient, sandbox: str, command: str, **extra: object):  # type: ignore[no-untyped-def]
    return await client.call(sandbox, "ses_sec", "bash", {"command": command, **extra})


async def test_no_connection_to_the_hosts_loopback(
    host: HandsHost, client: HandsTestClient, nats_server: NatsServer
) -> None:
    sandbox = (await client.provision("ses_sec")).sandbox_id
    outcome = await bash(
        client, sandbox, f"exec 3<>/dev/tcp/127.0.0.1/{nats_server.port} && echo CONNECTED"
    )
    assert outcome.is_error and "CONNECTED" not in outcome.output
    outside = await bash(client, sandbox, "exec 3<>/dev/tcp/1.1.1.1/53 && echo CONNECTED")
    assert outside.is_error and "CONNECTED" not in outside.output


async def test_no_host_environment_or_credentials(host: HandsHost, client: HandsTestClient) -> None:
    sandbox = (await client.provision("ses_sec")).sandbox_id
    outcome = await bash(client, sandbox, "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'")
    assert not outcome.is_error
    assert SECRET not in outcome.output and "KEEL_" not in outcome.output
    assert "NATS" not in outcome.output


async def test_writes_stay_in_the_workspace(host: HandsHost, client: HandsTestClient) -> None:
    first = (await client.provision("ses_a")).sandbox_id
    second = (await client.provision("ses_b")).sandbox_id
    await client.call(first, "ses_a", "write_file", {"path": "private.txt", "content": SECRET})
    escapes = await client.call(
        second,
        "ses_b",
        "bash",
        {
            "command": "for p in /etc/x /usr/x /x /keel/x /keel/executor.py; do "
            "(echo hi > $p) 2>/dev/null && echo WROTE $p; done; id -u; "
            "find / -name private.txt -not -path '/proc/*' 2>/dev/null; echo end"
        },
    )
    assert "WROTE" not in escapes.output
    assert escapes.output.splitlines()[0] != "0"  # not root
    assert escapes.output.splitlines()[1] == "end"  # the other session's file is invisible
    mine = await client.call(second, "ses_b", "write_file", {"path": "ok.txt", "content": "ok"})
    assert not mine.is_error


async def test_fork_bomb_memory_hog_and_output_flood_are_contained(
    settings: HandsSettings, backend: SandboxBackend, client: HandsTestClient
) -> None:
    # A smaller spill limit than production's 64 MiB: the same mechanism, a faster test.
    spill = 8 * 1024 * 1024
    host = HandsHost(msgspec.structs.replace(settings, max_spill_bytes=spill), backend)
    await host.start()
    try:
        spec = SandboxSpec(memory_mb=256, pids=64, call_timeout_s=60)
        victim = (await client.provision("ses_bad", spec=spec)).sandbox_id
        bystander = (await client.provision("ses_ok")).sandbox_id
        await client.call(bystander, "ses_ok", "write_file", {"path": "f", "content": "fine"})
        misbehaving = asyncio.Event()

        async def serve_the_bystander() -> float:
            """The host keeps serving another sandbox while the victim misbehaves."""
            worst = 0.0
            while not misbehaving.is_set():
                started = time.monotonic()
                outcome = await client.call(bystander, "ses_ok", "read_file", {"path": "f"})
                assert outcome.output == "fine"
                worst = max(worst, time.monotonic() - started)
                await asyncio.sleep(0.05)
            return worst

        async def misbehave():  # type: ignore[no-untyped-def]
            try:
                bomb = await bash(client, victim, "b() { b | b & }; b; sleep 5", timeout_s=3)
                hog = await bash(client, victim, "python3 -c 'x = bytearray(2 * 1024 ** 3)'")
                flood = await bash(client, victim, "head -c 1000000000 /dev/zero")
                return bomb, hog, flood
            finally:
                misbehaving.set()

        (bomb, hog, flood), worst = await asyncio.gather(misbehave(), serve_the_bystander())
        assert bomb.is_error and "timed out" in bomb.output
        assert hog.is_error and "MemoryError" in hog.output
        assert flood.is_error and "process group killed" in flood.output
        assert flood.blob is not None and flood.blob.size <= spill
        assert worst < 5.0
        # The victim itself recovers once its offenders are gone.
        after = await bash(client, victim, "echo alive")
        assert not after.is_error and "alive" in after.output
    finally:
        await host.close(destroy_sandboxes=True)
