"""Anthropic's toolset (`agent_toolset_20260401`) by its own names and inputs, through the
whole path: NATS, the hands host, a real sandbox, the executor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from hands import HandsHost
from schemas import ToolOutcome
from tests.hands.client import HandsTestClient

SESSION = "ses_toolset"

Call = Callable[..., Awaitable[ToolOutcome]]


@pytest.fixture
async def call(host: HandsHost, client: HandsTestClient) -> Call:
    sandbox = (await client.provision(SESSION)).sandbox_id

    async def call(name: str, **arguments: object) -> ToolOutcome:
        return await client.call(sandbox, SESSION, name, arguments)

    return call


async def test_write_read_edit(call: Call) -> None:
    wrote = await call("write", file_path="src/app.py", content="x = 1\ny = 2\nx = 3\n")
    assert not wrote.is_error and wrote.outcome == "ok" and wrote.checkpoint
    assert (await call("read", file_path="src/app.py")).output == "x = 1\ny = 2\nx = 3\n"
    assert (await call("read", file_path="src/app.py", view_range=[2, 2])).output == "y = 2\n"
    assert (await call("read", file_path="src/app.py", view_range=[2, -1])).output == (
        "y = 2\nx = 3\n"
    )
    past = await call("read", file_path="src/app.py", view_range=[9, -1])
    assert past.is_error and "has 3 lines" in past.output

    ambiguous = await call("edit", file_path="src/app.py", old_string="x = ", new_string="z = ")
    assert ambiguous.is_error and "occurs 2 times" in ambiguous.output
    assert "replace_all" in ambiguous.output
    once = await call("edit", file_path="src/app.py", old_string="y = 2", new_string="y = 20")
    assert not once.is_error and once.checkpoint != wrote.checkpoint
    every = await call(
        "edit", file_path="src/app.py", old_string="x = ", new_string="z = ", replace_all=True
    )
    assert not every.is_error and "replaced 2 occurrences" in every.output
    assert (await call("read", file_path="src/app.py")).output == "z = 1\ny = 20\nz = 3\n"
    absent = await call("edit", file_path="src/app.py", old_string="nope", new_string="z")
    assert absent.is_error and "not found" in absent.output

    # An absolute path inside the workspace is the same file.
    workspace = (await call("bash", command="pwd")).output.splitlines()[0]
    inside = await call("read", file_path=f"{workspace}/src/app.py", view_range=[1, 1])
    assert inside.output == "z = 1\n"


async def test_glob_and_grep(call: Call) -> None:
    for path in ("src/new.py", "src/old.py", "README.md"):
        await call("write", file_path=path, content=f"# {path}\n")
    await call("bash", command="touch -d 2020-01-01 src/old.py && touch -d 2021-01-01 README.md")
    await call("bash", command="mkdir .git && touch .git/HEAD")
    # Newest first, paths relative to the workspace whatever `path` searched.
    assert (await call("glob", pattern="**/*.py")).output == "src/new.py\nsrc/old.py"
    assert (await call("glob", pattern="*", path="src")).output == "src/new.py\nsrc/old.py"
    assert (await call("glob", pattern="**")).output == "src/new.py\nREADME.md\nsrc/old.py"
    assert (await call("glob", pattern="*.txt")).output == "[no files match]"
    assert (await call("glob", pattern=".git/*")).output == ".git/HEAD"
    assert (await call("grep", pattern="old", path="src")).output == "src/old.py:1:# src/old.py"
    assert (await call("grep", pattern="#", path="README.md")).output == "README.md:1:# README.md"


async def test_paths_out_of_the_workspace_are_refused(call: Call) -> None:
    await call("bash", command="ln -s /etc escape")
    for path in ("../../etc/passwd", "/etc/passwd", "escape/passwd"):
        read = await call("read", file_path=path)
        assert read.is_error and "outside the workspace" in read.output
        assert "root:" not in read.output
        wrote = await call("write", file_path=path, content="x")
        assert wrote.is_error and "outside the workspace" in wrote.output
        edit = await call("edit", file_path=path, old_string="root", new_string="x")
        assert edit.is_error and "outside the workspace" in edit.output
    for pattern in ("/etc/*", "../../etc/*"):
        found = await call("glob", pattern=pattern)
        assert found.is_error and "must be relative" in found.output
    assert (await call("glob", pattern="passwd", path="/etc")).is_error
    assert (await call("glob", pattern="escape/*")).output == "[no files match]"
    assert (await call("grep", pattern="root", path="/etc")).is_error


async def test_bash_timeout_ms_and_restart(call: Call) -> None:
    slow = await call("bash", command="sleep 30; echo never", timeout_ms=500)
    assert slow.is_error and "timed out after 0.5s" in slow.output and "never" not in slow.output
    # timeout_ms wins over timeout_s.
    wins = await call("bash", command="sleep 30", timeout_s=60, timeout_ms=300)
    assert wins.is_error and "timed out after 0.3s" in wins.output
    default = await call("bash", command="echo done", timeout_ms=0)
    assert not default.is_error and "done" in default.output

    moved = await call("bash", command="mkdir -p sub && cd sub && export LEFT=1 && pwd")
    restarted = await call("bash", restart=True)
    assert not restarted.is_error and "restarted" in restarted.output
    fresh = await call("bash", command='pwd; echo "${LEFT:-unset}"')
    workspace = moved.output.splitlines()[0].removesuffix("/sub")
    assert fresh.output.splitlines()[:2] == [workspace, "unset"]
    both = await call("bash", command="echo again", restart=True)
    assert not both.is_error and "again" in both.output


async def test_malformed_inputs_are_clear_errors(call: Call) -> None:
    cases: list[tuple[str, dict[str, object], str]] = [
        ("bash", {}, "`command` is required unless `restart` is true"),
        ("bash", {"command": "ls", "timeout_ms": -5}, "Expected `int` >= 0"),
        ("read", {"path": "a"}, "unknown field `path`"),
        ("read", {"file_path": "a", "view_range": [0, 2]}, "starts at line 1 or later"),
        ("read", {"file_path": "a", "view_range": [1, 2, 3]}, "length <= 2"),
        ("write", {"file_path": "a"}, "missing required field `content`"),
        ("edit", {"file_path": "a", "old_string": "x", "new_string": 1}, "Expected `str`"),
        ("glob", {"path": "src"}, "missing required field `pattern`"),
    ]
    for name, arguments, error in cases:
        outcome = await call(name, **arguments)
        assert outcome.is_error and outcome.outcome == "error", (name, arguments)
        assert f"invalid input for {name}" in outcome.output and error in outcome.output
