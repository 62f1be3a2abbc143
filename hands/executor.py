"""The sandbox executor: the small program that runs tools inside a sandbox.

It runs under the sandbox's own Python with the standard library only (the sandbox image has
no keel packages) and without asyncio (whose import alone would double a sandbox's cold
start), listens on a unix socket in a directory the hands host mounted in, and speaks
newline-delimited JSON:

    {"op": "call", "call_id", "tool", "input", "idempotent", "timeout_s", "max_output_bytes",
     "spill_bytes"}
        -> {"op": "result", "call_id", "output", "is_error", "exit_code", "truncated",
            "full_output", "duration_ms"}
    {"op": "collect", "call_id"}  -> its result, once it has one; a call_id never received is
                                  answered `"unknown": true` and refused from then on
    {"op": "cancel", "call_id"}   the call's process group is killed; its result says so
    {"op": "forget", "call_id"}   the host has recorded the result: drop it
    {"op": "ping"} -> {"op": "pong"}

Besides the model's tools it runs the harness's own (`workspace_files`, `restore_files`:
what context resets read and how the test ratchet puts test files back, whose output is JSON;
`merge_workspace`: a thread's work merged into this workspace, a git repository).

The hands host keeps the records that make a call_id run at most once, where no command run
here can reach them; it never sends a call_id twice. The executor keeps results only in
memory until the host has recorded them (a host that died meanwhile is replaced by one that
collects them), and still runs no call_id it has seen twice. Idempotent calls (reads) simply
run. Full output over the inline limit is spilled to the outputs directory for the host.
The executor never talks to the network; it could not anyway.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import io
import json
import os
import re
import select
import shutil
import signal
import socketserver
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

READ_CHUNK = 65536
# keel's id pattern (`schemas.ID_PATTERN`; this file cannot import keel, a test keeps the two
# the same).
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_LISTED = 2000
# The tools other than bash, each a method of the same name taking the call's input.
FILE_TOOLS = frozenset(
    {"read_file", "write_file", "edit_file", "list_files", "grep", "read", "write", "edit", "glob"}
    | {"workspace_files", "restore_files", "merge_workspace"}
)
# git as a merge runs it: the thread's repository is not trusted, so none of its hooks or
# its file-system monitor runs here, and a commit made for it is the same however often it
# is made (its dates fixed), so a merge run again finds its branch merged already.
GIT = ("git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "keel",
    "GIT_AUTHOR_EMAIL": "keel@localhost",
    "GIT_COMMITTER_NAME": "keel",
    "GIT_COMMITTER_EMAIL": "keel@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}
THREAD_COMMIT_DATE = "2000-01-01T00:00:00+0000"
THREAD_REPOSITORY_CONFIG = "[core]\n\trepositoryformatversion = 0\n\tbare = false\n"


class ToolError(Exception):
    """A tool failed in a way the model should see (missing file, ambiguous edit...)."""


class Executor:
    def __init__(
        self,
        workspace: Path,
        outputs: Path,
        memory_bytes: int | None,
        *,
        own_pid_namespace: bool = False,
    ) -> None:
        # Resolved: the file tools refuse any path that does not resolve inside it.
        self.workspace = workspace.resolve()
        # Every process it sees is the sandbox's: it may stop those its calls left behind.
        self.own_pid_namespace = own_pid_namespace
        self.outputs = outputs
        self.memory_bytes = memory_bytes
        self.lock = threading.Lock()
        # Every non-idempotent call_id received (or refused by `collect`): none runs twice.
        self.seen: set[str] = set()
        # call_id -> set when its result is ready (a collect waits on it).
        self.running: dict[str, threading.Event] = {}
        # Results the host has not recorded yet.
        self.results: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, int] = {}
        self.cancelled: set[str] = set()
        # One merge at a time: a merge sent again while the first still runs waits for it,
        # then finds its branch merged.
        self.merge_lock = threading.Lock()

    # -- the protocol -----------------------------------------------------------------------

    def serve(self, reader: Any, writer: Any) -> None:
        """One host connection: requests in, results out, calls answered as they finish."""
        write_lock = threading.Lock()

        def send(message: dict[str, Any]) -> None:
            with write_lock, contextlib.suppress(OSError):
                writer.write(json.dumps(message).encode() + b"\n")
                writer.flush()

        def answer(request: dict[str, Any]) -> None:
            send(self.collect(request) if request["op"] == "collect" else self.call(request))

        for line in reader:
            try:
                request = json.loads(line)
                op = request["op"]
            except (ValueError, KeyError, TypeError):
                send({"op": "error", "error": "malformed request"})
                continue
            if op in ("call", "collect"):
                threading.Thread(target=answer, args=(request,), daemon=True).start()
            elif op == "cancel":
                self.cancel(str(request.get("call_id")))
            elif op == "forget":
                self.forget(str(request.get("call_id")))
            elif op == "ping":
                send({"op": "pong"})
            else:
                send({"op": "error", "error": f"unknown op {op!r}"})

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        call_id = str(request.get("call_id", ""))
        if not _valid(call_id):
            return _result(call_id, "invalid call_id", is_error=True)
        if request.get("idempotent") is True:
            # Safe to run again (reads, listings, searches): nothing to keep or consult.
            return self.guarded_run(call_id, request)
        with self.lock:
            if call_id in self.seen:
                # The host never sends a call_id twice; whoever did gets nothing run.
                return _unknown(call_id, "this call_id was received before; it is not run again")
            self.seen.add(call_id)
            self.running[call_id] = threading.Event()
        result = self.guarded_run(call_id, request)
        with self.lock:
            self.results[call_id] = result
            self.running.pop(call_id).set()
        return result

    def collect(self, request: dict[str, Any]) -> dict[str, Any]:
        """The result of a call a previous host sent, which it may not have seen."""
        call_id = str(request.get("call_id", ""))
        if not _valid(call_id):
            return _result(call_id, "invalid call_id", is_error=True)
        with self.lock:
            waiting = self.running.get(call_id)
            if call_id not in self.seen:
                # Never received. Refused from now on: a `call` for it that is still on its
                # way (buffered on the dead host's connection) must not run after this answer.
                self.seen.add(call_id)
                self.results[call_id] = _unknown(
                    call_id,
                    "the call never reached the sandbox (its hands host stopped before sending "
                    "it); it did not run and will not",
                )
                return self.results[call_id]
        if waiting is not None:
            waiting.wait()
        with self.lock:
            result = self.results.get(call_id)
        if result is None:
            # Forgotten: only the host that recorded it (or the sandbox itself) tells it so.
            return _unknown(call_id, "the call ran but its result was dropped; it is unknown")
        return result

    def cancel(self, call_id: str) -> None:
        with self.lock:
            self.cancelled.add(call_id)
            group = self.groups.get(call_id)
        if group is not None:
            _kill_group(group)

    def forget(self, call_id: str) -> None:
        with self.lock:
            self.results.pop(call_id, None)

    # -- the tools --------------------------------------------------------------------------

    def guarded_run(self, call_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """The call's result, whatever happened: the host must get one."""
        try:
            return self.run(call_id, request)
        except Exception as exc:
            return _result(call_id, f"the executor failed: {exc!r}", is_error=True)

    def run(self, call_id: str, request: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        tool = request.get("tool")
        arguments = request.get("input") or {}
        limit = int(request.get("max_output_bytes", 30_000))
        try:
            if tool == "bash":
                result = self.bash(call_id, arguments, request)
            elif tool in FILE_TOOLS:
                result = _result(call_id, getattr(self, tool)(arguments))
            else:
                raise ToolError(f"unknown tool {tool!r}")
        except ToolError as exc:
            result = _result(call_id, str(exc), is_error=True)
        except (OSError, ValueError, TypeError, KeyError, re.error) as exc:
            result = _result(call_id, f"{type(exc).__name__}: {exc}", is_error=True)
        if not result.get("full_output") and len(result["output"].encode()) > limit:
            full = self.outputs / f"{call_id}.out"
            self.outputs.mkdir(exist_ok=True)  # made on demand: a command may remove it
            full.write_text(result["output"])
            result["full_output"] = str(full)
            result["output"] = _head(result["output"], limit)
            result["truncated"] = True
        result["duration_ms"] = (time.monotonic() - started) * 1000
        return result

    def bash(
        self, call_id: str, arguments: dict[str, Any], request: dict[str, Any]
    ) -> dict[str, Any]:
        command = arguments.get("command")
        if command is None and arguments.get("restart"):
            return _result(
                call_id,
                "[bash restarted: every command runs in a fresh shell, nothing carried over]",
            )
        if not isinstance(command, str):
            raise ToolError("command must be a string")
        if arguments.get("timeout_ms"):
            timeout = int(arguments["timeout_ms"]) / 1000
        else:
            timeout = float(arguments.get("timeout_s") or request.get("timeout_s") or 120.0)
        limit = int(request.get("max_output_bytes", 30_000))
        spill_limit = int(request.get("spill_bytes", 64 * 1024 * 1024))
        spill_path = self.outputs / f"{call_id}.out"
        self.outputs.mkdir(exist_ok=True)  # made on demand: a command may remove it
        # prlimit, not a preexec_fn (unsafe with threads): a memory hog then fails its own
        # allocations instead of waking the OOM killer, which might pick the executor.
        limit_memory = ["prlimit", f"--as={self.memory_bytes}"] if self.memory_bytes else []
        process = subprocess.Popen(
            [*limit_memory, "/bin/bash", "-c", command],
            cwd=self.workspace,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with self.lock:
            self.groups[call_id] = process.pid
        deadline = time.monotonic() + timeout
        try:
            head, total, timed_out, flooded = self._collect(
                process, spill_path, limit, spill_limit, deadline
            )
            # Its output ended; let the command itself finish (it may still be exiting).
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        finally:
            with self.lock:
                self.groups.pop(call_id, None)
            _kill_group(process.pid)  # whatever the command left running in its group
            process.wait()
        code = process.returncode
        text = head.decode("utf-8", "replace")
        truncated = total > limit
        if call_id in self.cancelled:
            note, is_error = "[cancelled]", True
        elif timed_out:
            note, is_error = f"[timed out after {timeout:g}s; process group killed]", True
        elif flooded:
            note, is_error = f"[output over {spill_limit} bytes; process group killed]", True
        else:
            note, is_error = f"[exit code {code}]", code != 0
        if truncated:
            note = f"[output truncated: {total} bytes, showing the first {limit}]\n{note}"
        else:
            spill_path.unlink(missing_ok=True)
        result = _result(call_id, f"{text}\n{note}" if text else note, is_error=is_error)
        result["exit_code"] = code
        if truncated:
            result["truncated"] = True
            result["full_output"] = str(spill_path)
        return result

    def _collect(
        self,
        process: subprocess.Popen[bytes],
        spill_path: Path,
        limit: int,
        spill_limit: int,
        deadline: float,
    ) -> tuple[bytes, int, bool, bool]:
        """Read the command's output until it ends: the head in memory, the rest spilled to
        a file up to `spill_limit` (past it, or past the deadline, the group is killed)."""
        assert process.stdout is not None
        pipe = process.stdout.fileno()
        head = bytearray()
        total = 0
        timed_out = flooded = False
        with spill_path.open("wb") as spill:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 and not timed_out:
                    timed_out = True
                    _kill_group(process.pid)
                    # A straggler that left the group may hold the pipe: read a moment more.
                    deadline = time.monotonic() + 1.0
                    continue
                if remaining <= 0:
                    break
                ready, _, _ = select.select([pipe], [], [], remaining)
                if not ready:
                    continue
                chunk = os.read(pipe, READ_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if len(head) < limit:
                    head.extend(chunk[: limit - len(head)])
                if total <= spill_limit:
                    spill.write(chunk)
                elif not flooded:
                    flooded = True
                    _kill_group(process.pid)
        process.stdout.close()
        return bytes(head), total, timed_out, flooded

    def read_file(self, arguments: dict[str, Any]) -> str:
        path = self._path(arguments["path"])
        if not path.is_file():
            raise ToolError(f"no such file: {arguments['path']}")
        text = path.read_text(errors="replace")
        start, end = arguments.get("start_line"), arguments.get("end_line")
        if start is None and end is None:
            return text
        lines = text.splitlines(keepends=True)
        first = max(1, int(start or 1))
        last = min(len(lines), int(end or len(lines)))
        if first > len(lines):
            raise ToolError(f"{arguments['path']} has {len(lines)} lines; asked from {first}")
        return "".join(lines[first - 1 : last])

    def write_file(self, arguments: dict[str, Any]) -> str:
        path = self._path(arguments["path"])
        content = arguments["content"]
        if not isinstance(content, str):
            raise ToolError("content must be a string")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode()
        path.write_bytes(data)
        return f"wrote {len(data)} bytes to {arguments['path']}"

    def edit_file(self, arguments: dict[str, Any]) -> str:
        path = self._path(arguments["path"])
        old, new = arguments["old_string"], arguments["new_string"]
        if not isinstance(old, str) or not isinstance(new, str):
            raise ToolError("old_string and new_string must be strings")
        if not old:
            raise ToolError("old_string is empty; to create a file, write it whole instead")
        if not path.is_file():
            raise ToolError(f"no such file: {arguments['path']}")
        text = path.read_text()
        count = text.count(old)
        replace_all = arguments.get("replace_all") is True
        if count == 0:
            raise ToolError(f"old_string not found in {arguments['path']}")
        if count > 1 and not replace_all:
            raise ToolError(
                f"old_string occurs {count} times in {arguments['path']}; "
                "include more surrounding text so it is unique, or set replace_all"
            )
        path.write_text(text.replace(old, new, -1 if replace_all else 1))
        if replace_all:
            return f"edited {arguments['path']}: replaced {count} occurrences"
        return f"edited {arguments['path']}"

    def list_files(self, arguments: dict[str, Any]) -> str:
        root, found = self._matching(arguments)
        return _listing(sorted(str(p.relative_to(root)) for p in found))

    def grep(self, arguments: dict[str, Any]) -> str:
        flags = re.IGNORECASE if arguments.get("ignore_case") else 0
        try:
            regex = re.compile(arguments["pattern"], flags)
        except re.error as exc:
            raise ToolError(f"invalid regular expression: {exc}") from exc
        root = self._path(arguments.get("path") or ".")
        name_glob = arguments.get("glob")
        limit = int(arguments.get("max_matches") or 500)
        files = [root] if root.is_file() else sorted(_walk(root))
        matches: list[str] = []
        for file in files:
            relative = file.name if file == root else str(file.relative_to(root))
            if name_glob and not (
                fnmatch.fnmatch(relative, name_glob) or fnmatch.fnmatch(file.name, name_glob)
            ):
                continue
            if not self._inside(file):
                continue  # a link out of the workspace
            try:
                data = file.read_bytes()
            except OSError:
                continue
            if b"\0" in data[:8192]:
                continue  # binary
            for number, line in enumerate(data.decode(errors="replace").splitlines(), 1):
                if regex.search(line):
                    matches.append(f"{file.relative_to(self.workspace)}:{number}:{line}")
                    if len(matches) >= limit:
                        return "\n".join([*matches, f"[stopped at {limit} matches]"])
        return "\n".join(matches) if matches else "[no matches]"

    # -- Anthropic's toolset (`agent_toolset_20260401`): its inputs, the tools above -------

    def read(self, arguments: dict[str, Any]) -> str:
        start, end = arguments.get("view_range") or (None, None)
        return self.read_file(
            {
                "path": arguments["file_path"],
                "start_line": start,
                # An end of 0 or less reads to the end of the file.
                "end_line": end if end is None or end > 0 else None,
            }
        )

    def write(self, arguments: dict[str, Any]) -> str:
        return self.write_file(_with_path(arguments))

    def edit(self, arguments: dict[str, Any]) -> str:
        return self.edit_file(_with_path(arguments))

    def glob(self, arguments: dict[str, Any]) -> str:
        _, found = self._matching(arguments)
        newest = sorted(found, key=lambda p: (-p.stat().st_mtime, str(p)))
        return _listing([str(p.relative_to(self.workspace)) for p in newest])

    # -- the harness's own: handoff files, and the test ratchet's digests and restores -----

    def workspace_files(self, arguments: dict[str, Any]) -> str:
        if arguments.get("stop_processes") is True and self.own_pid_namespace:
            self._stop_strays()
        read_bytes = int(arguments.get("read_bytes", 16 * 1024))
        read = [self._handoff(str(path), read_bytes) for path in arguments.get("read") or []]
        known = {str(digest) for digest in arguments.get("known") or []}
        budget = int(arguments.get("content_bytes", 96 * 1024))
        limit = int(arguments.get("max_protected", 2000))
        protected: list[dict[str, Any]] = []
        for relative in self._protected_paths([str(g) for g in arguments.get("protected") or []]):
            if len(protected) >= limit:
                raise ToolError(f"more than {limit} files match the protected globs")
            entry: dict[str, Any] = {"path": relative}
            path = self.workspace / relative
            if path.is_symlink():
                # Never followed: a link is what it is, wherever it points.
                entry["digest"] = "symlink:" + os.readlink(path)
            else:
                data = path.read_bytes()
                entry["digest"] = hashlib.sha256(data).hexdigest()
                if entry["digest"] not in known and len(data) <= budget:
                    entry["content"] = base64.b64encode(data).decode()
                    known.add(entry["digest"])
                    budget -= len(data)
            protected.append(entry)
        return json.dumps({"read": read, "protected": protected})

    def restore_files(self, arguments: dict[str, Any]) -> str:
        files = arguments["files"]
        for item in files:
            relative = PurePosixPath(str(item["path"]))
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                raise ToolError(f"{item['path']} is not a path inside the workspace")
            data = base64.b64decode(item["content"])
            # Every directory on the way is made a real one: a link there could lead the
            # write anywhere.
            current = self.workspace
            for part in relative.parts[:-1]:
                current = current / part
                if current.is_symlink() or (current.exists() and not current.is_dir()):
                    current.unlink()
                current.mkdir(exist_ok=True)
            target = current / relative.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.is_symlink() or target.exists():
                target.unlink()
            target.write_bytes(data)
        return f"restored {len(files)} files"

    def merge_workspace(self, arguments: dict[str, Any]) -> str:
        branch, message = str(arguments["branch"]), str(arguments["message"])
        archive = base64.b64decode(arguments["archive"])
        if not (self.workspace / ".git").is_dir():
            raise ToolError("the workspace is not a git repository: nothing to merge into")
        with self.merge_lock, tempfile.TemporaryDirectory(prefix="keel-merge-") as staging:
            theirs = Path(staging)
            _unpack(archive, theirs)
            if not (theirs / ".git").is_dir():
                raise ToolError("the thread's workspace is not a git repository")
            # Its own settings are the thread's to write: a clean filter or a pager there
            # would run a command of the thread's here.
            (theirs / ".git" / "config").write_text(THREAD_REPOSITORY_CONFIG)
            ref = f"refs/{branch}"
            if _git(self.workspace, "for-each-ref", ref).strip():
                # Merged before (the thread worked on after a message): its work goes on from
                # that commit, so what it did since merges cleanly.
                head = f"refs/heads/{branch}"
                _git(theirs, "fetch", "-q", "--no-tags", str(self.workspace), f"+{ref}:{head}")
                _git(theirs, "symbolic-ref", "HEAD", head)
            else:
                _git(theirs, "checkout", "-q", "-B", branch)
            _git(theirs, "add", "-A")
            if _git(theirs, "status", "--porcelain"):
                _git(theirs, "commit", "-q", "-m", message, dates=THREAD_COMMIT_DATE)
            fetched = f"+refs/heads/{branch}:{ref}"
            _git(self.workspace, "fetch", "-q", "--no-tags", str(theirs), fetched)
            commit = _git(self.workspace, "rev-parse", "--short", ref).strip()
            merged = subprocess.run(
                [*GIT, "merge-base", "--is-ancestor", ref, "HEAD"],
                cwd=self.workspace,
                capture_output=True,
                check=False,
            )
            if merged.returncode == 0:
                return f"{branch} ({commit}) is merged already"
            try:
                _git(self.workspace, "merge", "-q", "--no-ff", "-m", message, ref)
            except ToolError:
                subprocess.run(
                    [*GIT, "merge", "--abort"], cwd=self.workspace, capture_output=True, check=False
                )
                raise
            return f"merged {branch} ({commit})"

    def _stop_strays(self) -> None:
        """Kill every process of the sandbox but the executor, its ancestors and the calls
        it runs: what a command detached from its call (`setsid ... &`) could otherwise
        change files with after they were checked."""
        keep: set[int] = set()
        pid = os.getpid()
        while pid > 0 and pid not in keep:
            keep.add(pid)
            pid = _parent(pid)
        with self.lock:
            groups = set(self.groups.values())
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in keep:
                continue
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) not in groups:
                    os.kill(int(entry), signal.SIGKILL)

    def _handoff(self, raw: str, read_bytes: int) -> dict[str, Any]:
        """A handoff file as the model is shown it: absent (no such file, or not one the
        workspace holds) has no text."""
        try:
            path = self._path(raw)
        except ToolError:
            return {"path": raw}
        if not path.is_file():
            return {"path": raw}
        data = path.read_bytes()
        return {
            "path": raw,
            "text": data[:read_bytes].decode("utf-8", "replace"),
            "digest": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "truncated": len(data) > read_bytes,
        }

    def _protected_paths(self, globs: list[str]) -> list[str]:
        """Files (and links) whose path relative to the workspace matches a glob, or whose
        name matches a glob without `/`; .git left out; sorted."""
        if not globs:
            return []
        found = []
        for directory, subdirectories, names in os.walk(self.workspace):
            subdirectories[:] = [d for d in subdirectories if d != ".git"]
            for name in names:
                relative = str((Path(directory) / name).relative_to(self.workspace))
                if any(
                    fnmatch.fnmatchcase(relative, glob)
                    or ("/" not in glob and fnmatch.fnmatchcase(name, glob))
                    for glob in globs
                ):
                    found.append(relative)
        return sorted(found)

    # -- paths --------------------------------------------------------------------------------

    def _path(self, raw: object) -> Path:
        """`raw` (relative to the workspace, or absolute) resolved, if it is in the workspace."""
        if not isinstance(raw, str) or not raw:
            raise ToolError("path must be a non-empty string")
        path = (self.workspace / raw).resolve()
        if not path.is_relative_to(self.workspace):
            raise ToolError(f"{raw} is outside the workspace, which is all the file tools reach")
        return path

    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.workspace)

    def _matching(self, arguments: dict[str, Any]) -> tuple[Path, list[Path]]:
        """The directory `path` and the files in it (and in the workspace) whose path
        relative to it matches the glob `pattern`; those in .git only if it names .git."""
        root = self._path(arguments.get("path") or ".")
        if not root.is_dir():
            raise ToolError(f"no such directory: {arguments.get('path')}")
        pattern = arguments.get("pattern") or "**/*"
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise ToolError(
                f"pattern {pattern!r} must be relative to `path`, without `..`; "
                "give the directory to search as `path`"
            )
        if pattern.endswith("**"):
            pattern += "/*"  # pathlib's trailing `**` matches directories only
        within_git = ".git" in Path(pattern).parts
        found = [
            p
            for p in root.glob(pattern)
            if p.is_file()
            and (within_git or ".git" not in p.relative_to(root).parts)
            and self._inside(p)
        ]
        return root, found


def _with_path(arguments: dict[str, Any]) -> dict[str, Any]:
    """A toolset input as the input of the keel tool it runs on (`file_path` is `path`)."""
    return {"path" if key == "file_path" else key: value for key, value in arguments.items()}


def _listing(paths: list[str]) -> str:
    if len(paths) > MAX_LISTED:
        extra = len(paths) - MAX_LISTED
        return "\n".join([*paths[:MAX_LISTED], f"[{extra} more files not listed]"])
    return "\n".join(paths) if paths else "[no files match]"


def _walk(root: Path) -> list[Path]:
    files = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d != ".git"]
        files += [Path(directory) / name for name in names]
    return files


def _valid(call_id: str) -> bool:
    return ID_PATTERN.fullmatch(call_id) is not None


def _result(call_id: str, output: str, *, is_error: bool = False) -> dict[str, Any]:
    return {
        "op": "result",
        "call_id": call_id,
        "output": output,
        "is_error": is_error,
        "exit_code": None,
        "truncated": False,
        "full_output": None,
        "duration_ms": 0.0,
    }


def _unknown(call_id: str, output: str) -> dict[str, Any]:
    return {**_result(call_id, output, is_error=True), "unknown": True}


def _head(text: str, limit: int) -> str:
    cut = text.encode()[:limit].decode(errors="ignore")
    return f"{cut}\n[output truncated: {len(text.encode())} bytes, showing the first {limit}]"


def _unpack(archive: bytes, into: Path) -> None:
    """A workspace checkpoint, unpacked: its files, directories and links that stay inside
    it (tarfile's own `data` filter does this from Python 3.11.4; the sandbox's may be
    older)."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as unpacked:
        members = []
        for member in unpacked.getmembers():
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts:
                raise ToolError(f"the checkpoint names a path outside it: {member.name}")
            if member.issym():
                target = PurePosixPath(member.linkname)
                if target.is_absolute() or ".." in (path.parent / target).parts:
                    continue
            elif not (member.isfile() or member.isdir()):
                continue
            member.mode &= 0o755
            members.append(member)
        unpacked.extractall(into, members=members)


def _git(where: Path, *arguments: str, dates: str | None = None) -> str:
    """git's output; a failure is a ToolError saying what git said."""
    environment = {**os.environ, **GIT_IDENTITY}
    if dates is not None:
        environment |= {"GIT_AUTHOR_DATE": dates, "GIT_COMMITTER_DATE": dates}
    done = subprocess.run(
        [*GIT, *arguments], cwd=where, env=environment, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise ToolError(f"git {arguments[0]} failed ({done.returncode}): {said}")
    return done.stdout


def _parent(pid: int) -> int:
    """The parent of `pid` (0 when unknown): the field after the state in /proc/<pid>/stat,
    after the command name, which may hold spaces and parentheses."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def main() -> None:
    # Not argparse: its import alone is a tenth of a sandbox's cold start.
    usage = "executor.py --socket PATH --workspace DIR --outputs DIR [--memory-bytes N]"
    flags = sys.argv[1:]
    if len(flags) % 2 or not set(flags[::2]) <= {
        "--socket",
        "--workspace",
        "--outputs",
        "--memory-bytes",
    }:
        raise SystemExit(f"usage: {usage}")
    args = dict(zip(flags[::2], flags[1::2], strict=True))
    if not {"--socket", "--workspace", "--outputs"} <= args.keys():
        raise SystemExit(f"usage: {usage}")
    memory = int(args.get("--memory-bytes", "0"))
    # Every backend starts the executor in the sandbox's own pid namespace (bubblewrap's and
    # unshare's --pid, a container's).
    executor = Executor(
        Path(args["--workspace"]),
        Path(args["--outputs"]),
        memory or None,
        own_pid_namespace=True,
    )

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            executor.serve(self.rfile, self.wfile)

    with contextlib.suppress(FileNotFoundError):
        os.unlink(args["--socket"])
    with _Server(args["--socket"], Handler) as server:
        # Ready: the host may connect from now on.
        print("ready", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
