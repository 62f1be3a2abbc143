"""The harness's own calls (what context resets read, how the test ratchet puts test files
back, a thread's work merged into its coordinator's repository), through the whole path:
NATS, the hands host, a real sandbox, the executor."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from hands import HandsHost
from schemas import (
    MergeWorkspaceInput,
    RestoredFile,
    RestoreFilesInput,
    ToolOutcome,
    WorkspaceFiles,
    WorkspaceFilesInput,
)
from tests.hands.client import HandsTestClient

SESSION = "ses_harness"
TEST = b"from calc import add\nassert add(2, 3) == 5\n"


@pytest.fixture
async def sandbox(host: HandsHost, client: HandsTestClient) -> str:
    return (await client.provision(SESSION)).sandbox_id


async def read(
    client: HandsTestClient, sandbox: str, request: WorkspaceFilesInput
) -> WorkspaceFiles:
    outcome = await client.call(sandbox, SESSION, "workspace_files", msgspec.to_builtins(request))
    assert not outcome.is_error, outcome
    return msgspec.json.decode(outcome.output, type=WorkspaceFiles)


async def test_handoff_files_are_read_and_protected_files_digested_once(
    client: HandsTestClient, sandbox: str
) -> None:
    async def bash(command: str) -> None:
        assert not (await client.call(sandbox, SESSION, "bash", {"command": command})).is_error

    await bash(
        "mkdir -p tests pkg/tests && printf '1. add' > PLAN.md && printf 'x%.0s' {1..100} > BIG.md"
        " && printf 'from calc import add\\nassert add(2, 3) == 5\\n' > tests/test_calc.py"
        " && echo a > pkg/tests/helper.py && echo b > test_top.py && echo c > calc_test.go"
        " && echo d > calc.py && mkdir .git && echo e > .git/test_x.py"
    )
    request = WorkspaceFilesInput(
        read=["PLAN.md", "PROGRESS.md", "BIG.md", "../../etc/passwd"],
        read_bytes=10,
        protected=["tests/**", "*/tests/**", "test_*.py", "*_test.*"],
    )
    files = await read(client, sandbox, request)
    plan, progress, big, outside = files.read
    assert (plan.text, plan.digest) == ("1. add", hashlib.sha256(b"1. add").hexdigest())
    assert progress.text is None and outside.text is None
    assert (big.text, big.size, big.truncated) == ("x" * 10, 100, True)
    assert [f.path for f in files.protected] == [
        "calc_test.go",
        "pkg/tests/helper.py",
        "test_top.py",
        "tests/test_calc.py",
    ]
    by_path = {f.path: f for f in files.protected}
    assert by_path["tests/test_calc.py"].content == TEST
    # A version recorded already is named by its digest alone.
    known = [by_path["tests/test_calc.py"].digest]
    again = await read(client, sandbox, msgspec.structs.replace(request, known=known))
    assert {f.path: f.content for f in again.protected}["tests/test_calc.py"] is None


async def test_a_restore_replaces_changed_files_links_and_directories_on_the_way(
    client: HandsTestClient, sandbox: str
) -> None:
    command = (
        "mkdir -p elsewhere && echo evil > elsewhere/test_calc.py && ln -s elsewhere tests"
        " && mkdir -p test_dir.py && ln -s /etc/passwd test_link.py"
    )
    made = await client.call(sandbox, SESSION, "bash", {"command": command})
    assert not made.is_error, made
    restore = RestoreFilesInput(
        files=[
            RestoredFile(path="tests/test_calc.py", content=TEST),
            RestoredFile(path="test_dir.py", content=b"dir\n"),
            RestoredFile(path="test_link.py", content=b"link\n"),
        ]
    )
    restored = await client.call(sandbox, SESSION, "restore_files", msgspec.to_builtins(restore))
    # Checkpointed: a sandbox that replaces this one never brings back what it undid.
    assert not restored.is_error and restored.checkpoint not in (None, made.checkpoint), restored
    files = await read(
        client, sandbox, WorkspaceFilesInput(protected=["tests/**", "test_*.py", "elsewhere/*"])
    )
    assert {f.path: f.content for f in files.protected} == {
        "elsewhere/test_calc.py": b"evil\n",  # the link was replaced, not followed
        "test_dir.py": b"dir\n",
        "test_link.py": b"link\n",
        "tests/test_calc.py": TEST,
    }
    hostile = RestoreFilesInput(files=[RestoredFile(path="../outside.py", content=b"x")])
    refused = await client.call(sandbox, SESSION, "restore_files", msgspec.to_builtins(hostile))
    assert refused.is_error and "not a path inside the workspace" in refused.output


async def test_a_read_that_stops_processes_kills_what_a_call_left_detached(
    client: HandsTestClient, sandbox: str
) -> None:
    async def bash(command: str) -> str:
        outcome = await client.call(sandbox, SESSION, "bash", {"command": command})
        assert not outcome.is_error, (command, outcome.output)
        return outcome.output

    # Detached from its call's process group, it outlives the call, and could change a
    # test after the check. (The call lasts until the loop has left its group.)
    await bash(
        "setsid sh -c 'while true; do date +%s%N > t && mv t tick; sleep 0.05; done'"
        " >/dev/null 2>&1 & for i in $(seq 100); do test -f tick && break; sleep 0.05; done"
    )
    first, second = (await bash("cat tick; sleep 0.3; cat tick")).splitlines()[:2]
    assert first != second
    await read(client, sandbox, WorkspaceFilesInput(stop_processes=True))
    first, second = (await bash("cat tick; sleep 0.3; cat tick")).splitlines()[:2]
    assert first == second


async def test_a_threads_work_is_merged_from_its_checkpoint_once_and_a_conflict_is_undone(
    client: HandsTestClient, sandbox: str
) -> None:
    async def bash(where: str, session: str, command: str) -> ToolOutcome:
        outcome = await client.call(where, session, "bash", {"command": command})
        assert not outcome.is_error, outcome
        return outcome

    async def merge(checkpoint: str | None, branch: str = "keel/worker-1") -> ToolOutcome:
        assert checkpoint is not None
        request = MergeWorkspaceInput(checkpoint=checkpoint, branch=branch, message=branch)
        return await client.call(sandbox, SESSION, "merge_workspace", msgspec.to_builtins(request))

    base = await bash(
        sandbox,
        SESSION,
        "git init -q -b main && echo base > README && git add README"
        " && git -c user.name=c -c user.email=c@localhost commit -q -m base",
    )
    # A thread's sandbox, from the coordinator's checkpoint; its repository's own settings
    # name a clean filter, which must never run in the coordinator's sandbox.
    worker = (await client.provision("sthr_worker", checkpoint=base.checkpoint)).sandbox_id
    worked = await bash(
        worker,
        "sthr_worker",
        "echo a1 > a.txt && echo 'a.txt filter=x' > .gitattributes"
        " && printf '[filter \"x\"]\\n\\tclean = touch /tmp/ran-the-filter; cat\\n' >> .git/config",
    )
    first, again = await merge(worked.checkpoint), await merge(worked.checkpoint)
    assert first.output.startswith("merged keel/worker-1 (") and not first.is_error, first
    assert again.output.endswith("is merged already"), again
    assert first.checkpoint != base.checkpoint  # the merged workspace, checkpointed
    look = "git log --merges --format=%s; cat a.txt; ls; ls /tmp/ran-the-filter || true"
    looked = await bash(sandbox, SESSION, look)
    assert looked.output.splitlines()[:4] == ["keel/worker-1", "a1", "README", "a.txt"], looked
    assert "No such file" in looked.output, looked
    # Another thread changed the same file otherwise: the merge fails and is undone.
    other = (await client.provision("sthr_other", checkpoint=base.checkpoint)).sandbox_id
    clash = await bash(other, "sthr_other", "echo other > a.txt")
    refused = await merge(clash.checkpoint, "keel/worker-2")
    assert refused.is_error and "git merge failed" in refused.output, refused
    clean = await bash(sandbox, SESSION, "git status --porcelain; ls .git/MERGE_HEAD || true")
    assert "a.txt" not in clean.output and "No such file" in clean.output, clean
    missing = await merge("0" * 64, "keel/worker-3")
    assert missing.is_error and "no workspace checkpoint" in missing.output, missing
