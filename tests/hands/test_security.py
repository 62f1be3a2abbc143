"""What a sandboxed command must not be able to do, on every backend."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from hands import HandsHost, HandsSettings
from hands._backend import (
    EXECUTOR_SOURCE,
    SANDBOX_UID,
    SandboxBackend,
    SandboxDirs,
    SandboxRecord,
)
from hands._local import bwrap_command
from schemas import CallRequest, SandboxSpec, ToolOutcome, new_id, outcome_subject
from tests.hands.client import HandsTestClient
from tests.nats_server import NatsServer
from tests.sandboxes import local_backend

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


# -- the sandbox user on the host ---------------------------------------------------------


async def test_root_only_host_files_are_unreadable(
    host: HandsHost, client: HandsTestClient
) -> None:
    sandbox = (await client.provision("ses_sec")).sandbox_id
    shadow = await client.call(sandbox, "ses_sec", "read_file", {"path": "/etc/shadow"})
    assert shadow.is_error and "root:" not in shadow.output
    both = await bash(client, sandbox, "cat /etc/gshadow /etc/shadow")
    assert both.is_error and "root:" not in both.output


def host_uid(uid: int, uid_map: str) -> int | None:
    """What `uid` is on the host, by the user namespace's map (None: it is unmapped)."""
    for line in uid_map.splitlines():
        inside, outside, count = (int(field) for field in line.split())
        if inside <= uid < inside + count:
            return outside + uid - inside
    return None


async def test_the_sandbox_user_is_no_host_root_and_holds_no_capabilities(
    host: HandsHost, client: HandsTestClient
) -> None:
    sandbox = (await client.provision("ses_sec")).sandbox_id
    outcome = await bash(
        client, sandbox, "id -u; echo; cat /proc/self/uid_map; echo; grep ^Cap /proc/self/status"
    )
    assert not outcome.is_error, outcome.output
    uid, uid_map, caps = outcome.output.split("\n\n")[:3]
    assert host_uid(int(uid), uid_map) not in (0, None), outcome.output
    sets = dict(line.split(":\t") for line in caps.splitlines())
    assert {name: int(value, 16) for name, value in sets.items()} == {
        "CapInh": 0,
        "CapPrm": 0,
        "CapEff": 0,
        "CapBnd": 0,
        "CapAmb": 0,
    }, outcome.output


async def test_no_process_of_the_sandbox_is_host_root(
    host: HandsHost, client: HandsTestClient
) -> None:
    """As the host's kernel sees it: every process in the sandbox's pid namespace (its
    init, the executor, the commands it runs) has no uid 0 on the host."""
    sandbox = (await client.provision("ses_sec")).sandbox_id
    marker = f"keel-marker-{sandbox}"
    call = asyncio.ensure_future(bash(client, sandbox, f"exec -a {marker} sleep 2"))
    try:
        marked: list[Path] = []
        for _ in range(100):
            marked = [p for p in _processes() if _cmdline(p).startswith(marker)]
            if marked:
                break
            await asyncio.sleep(0.05)
        assert marked, "the marked command never showed in the host's /proc"
        namespace = os.readlink(marked[0] / "ns" / "pid")
        assert namespace != os.readlink("/proc/self/ns/pid")
        inside = [p for p in _processes() if _readlink(p / "ns" / "pid") == namespace]
        assert len(inside) >= 2  # at least an init (or the executor) and the command
        for process in inside:
            status = _read(process / "status").splitlines()  # empty: it has just ended
            for line in (line for line in status if line.startswith("Uid:")):
                uids = [int(uid) for uid in line.split()[1:]]  # real, effective, saved, fs
                assert 0 not in uids, (process, _cmdline(process), uids)
    finally:
        await call


def _processes() -> list[Path]:
    return [entry for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _cmdline(process: Path) -> str:
    return _read(process / "cmdline").replace("\0", " ")


def test_bubblewrap_run_by_a_user_who_is_not_root_maps_the_sandbox_user_to_that_user() -> None:
    """A hands host that is not root runs bubblewrap as itself: the sandbox user is then
    that host user, never root. (A whole host cannot run so here: creating the sandbox's
    cgroups needs root or a delegated cgroup tree; this runs the same command such a host
    would, as an unprivileged user, on a directory of that user's.)"""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another unprivileged user")
    local_backend("bwrap")  # fails where bubblewrap is required but missing
    user = 4242
    with tempfile.TemporaryDirectory() as place:  # under /tmp: the user can reach it
        dirs = SandboxDirs(Path(place), "sbx_user")
        dirs.workspace.mkdir(parents=True)
        dirs.ipc.mkdir()
        shutil.copyfile(EXECUTOR_SOURCE, dirs.executor)
        for path in (Path(place), dirs.root, dirs.workspace, dirs.ipc, dirs.executor):
            os.chown(path, user, user)
        command = bwrap_command(
            dirs,
            ["/bin/sh", "-c", "id -u; cat /proc/self/uid_map; cat /etc/shadow; touch mine"],
            network=False,
            root=False,
        )
        ran = subprocess.run(
            ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command],
            capture_output=True,
            text=True,
            env={},
            check=False,
        )
        lines = ran.stdout.split("\n")
        assert lines[0] == str(SANDBOX_UID), ran
        assert host_uid(SANDBOX_UID, lines[1]) == user, ran
        assert "Permission denied" in ran.stderr and "root:" not in ran.stdout
        assert (dirs.workspace / "mine").stat().st_uid == user


# -- at most once, whatever the sandbox does -----------------------------------------------

# Everything a command can reach outside its workspace, wrecked: files emptied, directories
# emptied, forged call records planted where the executor used to keep them. Only the
# executor's socket is spared: removing it, or killing the executor, only kills this sandbox,
# which its host then reports as lost.
HOSTILE = r"""
call=$1 future=$2
outside() {  # everything but the workspace and the kernel's own file systems
    find / \( -path /proc -o -path /sys -o -path /dev -o -path /workspace \) -prune -o "$@" \
        2>/dev/null
}
outside ! -type d ! -type s -writable -print | while read -r path; do
    : > "$path" && echo "emptied $path"
done
outside -type d -writable -print | sort -r | while read -r dir; do
    find "$dir" -mindepth 1 -maxdepth 1 ! -type d ! -type s -exec rm -f {} + 2>/dev/null
    [ "$dir" != / ] && rmdir "$dir" 2>/dev/null && echo "removed $dir"
    echo "cleared $dir"
done
# Forged records: the call above "acknowledged", a call not yet made "answered".
mkdir -p /keel/ipc/state/calls /keel/ipc/state/out 2>/dev/null && cd /keel/ipc/state/calls && {
    touch "$call.acked"
    echo '{"op": "result", "call_id": "'"$future"'", "output": "forged", "is_error": false}' \
        > "$future.json"
    echo '{"tool": "bash", "input": {}}' > "$future.started"
}
echo done
"""


async def test_a_command_cannot_make_its_sandbox_run_a_call_again(
    settings: HandsSettings, backend: SandboxBackend, client: HandsTestClient
) -> None:
    first = HandsHost(settings, backend)
    await first.start()
    second: HandsHost | None = None
    try:
        sandbox = (await client.provision("ses_sec")).sandbox_id
        request = CallRequest(
            call_id=new_id("call"),
            session_id="ses_sec",
            name="bash",
            input={"command": "echo ran >> count; wc -l < count"},
        )
        assert not (await client.send(sandbox, request)).error
        original = await client.outcome("ses_sec", request.call_id)
        assert original.output.startswith("1\n"), original.output
        future = new_id("call")
        wrecked = await bash(
            client, sandbox, f"sh -c {shlex.quote(HOSTILE)} - {request.call_id} {future}"
        )
        assert "done" in wrecked.output, wrecked.output
        await first.close()  # the sandbox keeps running for the next host

        second = HandsHost(settings, backend)
        await second.start()
        assert sandbox in second.sandboxes  # adopted, not replaced
        heard = await client.nc.subscribe(outcome_subject("ses_sec"))
        again = await client.send(sandbox, request)
        while True:
            message = await heard.next_msg(timeout=30)
            republished = msgspec.json.decode(message.data, type=ToolOutcome)
            if republished.call_id == request.call_id:
                break
        await heard.unsubscribe()
        # The command did not run a second time, and the host answered from its own record:
        # the original outcome, published again (JetStream keeps one).
        count = await client.call(sandbox, "ses_sec", "read_file", {"path": "count"})
        assert count.output == "ran\n"
        assert republished == original
        assert again.duplicate and not again.error
        assert await client.outcomes("ses_sec", request.call_id) == 1
        # A call made after the wrecking runs for real, whatever was planted for its id.
        later = await client.call(
            sandbox, "ses_sec", "bash", {"command": "echo genuine"}, call_id=future
        )
        assert later.output.startswith("genuine\n"), later.output
    finally:
        for host in (first, second):
            if host is not None:
                await host.close(destroy_sandboxes=True)
        # Whatever no host took back (a failed adoption) is removed too.
        for path in (settings.data_dir / "sandboxes").glob("*/record.json"):
            await backend.remove(msgspec.json.decode(path.read_bytes(), type=SandboxRecord))
