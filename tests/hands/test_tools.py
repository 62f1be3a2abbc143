"""Every tool, through the whole path: NATS, the hands host, a real sandbox, the executor."""

from __future__ import annotations

import pytest

from hands import HandsHost
from tests.hands.client import HandsTestClient

SESSION = "ses_tools"


@pytest.fixture
async def sandbox(host: HandsHost, client: HandsTestClient) -> str:
    return (await client.provision(SESSION)).sandbox_id


async def test_write_read_edit_list_grep(client: HandsTestClient, sandbox: str) -> None:
    async def call(name: str, **arguments: object):  # type: ignore[no-untyped-def]
        return await client.call(sandbox, SESSION, name, arguments)

    wrote = await call("write_file", path="src/app.py", content="x = 1\ny = 2\nx = 3\n")
    assert not wrote.is_error and wrote.outcome == "ok" and wrote.checkpoint
    assert (await call("read_file", path="src/app.py")).output == "x = 1\ny = 2\nx = 3\n"
    assert (await call("read_file", path="src/app.py", start_line=2, end_line=3)).output == (
        "y = 2\nx = 3\n"
    )
    ambiguous = await call("edit_file", path="src/app.py", old_string="x = ", new_string="z = ")
    assert ambiguous.is_error and "occurs 2 times" in ambiguous.output
    absent = await call("edit_file", path="src/app.py", old_string="nope", new_string="z")
    assert absent.is_error and "not found" in absent.output
    edited = await call("edit_file", path="src/app.py", old_string="y = 2", new_string="y = 20")
    assert not edited.is_error and edited.checkpoint != wrote.checkpoint
    assert "y = 20" in (await call("read_file", path="src/app.py")).output
    missing = await call("read_file", path="nope.txt")
    assert missing.is_error and missing.outcome == "error" and "no such file" in missing.output
    await call("write_file", path="README.md", content="hello\n")
    assert (await call("list_files")).output == "README.md\nsrc/app.py"
    assert (await call("list_files", pattern="**/*.py")).output == "src/app.py"
    found = await call("grep", pattern=r"y = \d+", glob="*.py")
    assert found.output == "src/app.py:2:y = 20"
    assert (await call("grep", pattern="HELLO", ignore_case=True)).output == "README.md:1:hello"
    # Paths as the other tools take them, whatever `path` searched.
    assert (await call("grep", pattern="y", path="src")).output == "src/app.py:2:y = 20"
    assert (await call("grep", pattern="y", path="src/app.py")).output == "src/app.py:2:y = 20"
    assert (await call("grep", pattern="(")).is_error
    # Only the workspace: a path or pattern out of it is refused, never a crash.
    hostile = await call("read_file", path="../../etc/passwd")
    assert hostile.is_error and "outside the workspace" in hostile.output
    absolute = await call("list_files", pattern="/etc/*")
    assert absolute.is_error and "must be relative" in absolute.output


async def test_bash_exit_codes_output_and_timeout(client: HandsTestClient, sandbox: str) -> None:
    ok = await client.call(sandbox, SESSION, "bash", {"command": "echo out; echo err >&2"})
    assert not ok.is_error and ok.exit_code == 0 and "out" in ok.output and "err" in ok.output
    failed = await client.call(sandbox, SESSION, "bash", {"command": "exit 3"})
    assert failed.is_error and failed.exit_code == 3 and "[exit code 3]" in failed.output
    slow = await client.call(
        sandbox,
        SESSION,
        "bash",
        {"command": "sleep 30 & sleep 30; echo never", "timeout_s": 0.5},
    )
    assert slow.is_error and "timed out" in slow.output and "never" not in slow.output
    # The whole group died: nothing from it is still running.
    left = await client.call(sandbox, SESSION, "bash", {"command": "ps -eo comm | grep -c sleep"})
    assert left.output.startswith("0")


async def test_large_output_is_truncated_and_stored_once_as_a_blob(
    client: HandsTestClient, sandbox: str, host: HandsHost
) -> None:
    outcome = await client.call(sandbox, SESSION, "bash", {"command": "seq 1 200000"})
    assert not outcome.is_error and outcome.blob is not None
    assert "output truncated" in outcome.output and len(outcome.output) < 31_000
    full = await (await client.js.object_store("keel-blobs")).get(outcome.blob.digest)
    assert full.data is not None and full.data.decode().split() == [
        str(i) for i in range(1, 200_001)
    ]
    assert outcome.blob.size == len(full.data)
