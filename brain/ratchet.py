"""The test ratchet, as pure functions of the state: which `write`/`edit` calls are refused,
what a read of the workspace shows changed, and what can be put back.

The protected files of an iteration are those matching `ContextResets.protected_tests` that
existed when it started: its worker (a fresh context, which cannot tell its predecessors'
tests from the initializer's) did not write them. Files it creates are its own. Refusing a
call by its path is the fast answer; the check at the end of every turn is the guarantee,
whatever the worker did (bash, links, absolute paths, renames).
"""

from __future__ import annotations

import posixpath
from typing import Final, NamedTuple

from brain.state import Iterations, SessionState, ToolCall
from schemas import ProtectedFileChange, WorkspaceFiles

# The tools that write a file, and the input naming it.
WRITING_TOOLS: Final = {
    "write": "file_path",
    "edit": "file_path",
    "write_file": "path",
    "edit_file": "path",
}


def ratchet_on(state: SessionState) -> bool:
    """Whether the session's test files are guarded: it has context resets that guard them,
    and keel's sandbox, where they are."""
    spec = state.spec
    resets = spec.context_resets if spec is not None else None
    return resets is not None and resets.ratchet and spec is not None and spec.has_sandbox()


def refusal(state: SessionState, call: ToolCall) -> str | None:
    """Why the call may not run (it writes a protected file), or None."""
    key = WRITING_TOOLS.get(call.name)
    if key is None or not ratchet_on(state):
        return None
    raw = call.input.get(key)
    if not isinstance(raw, str):
        return None
    path = protected_path(raw, state.iterations.protected)
    if path is None:
        return None
    return (
        f"refused: {path} is a protected test file (it existed when this iteration started "
        "and you did not write it); the harness does not let you change or delete it"
    )


def protected_path(raw: str, protected: dict[str, str]) -> str | None:
    """The protected file `raw` names, if any. An absolute path is matched by its end: the
    brain does not know where the sandbox keeps the workspace, and refusing too much here is
    harmless (the call gets its one outcome, an error)."""
    path = posixpath.normpath(raw)
    if not path.startswith("/"):
        return path if path in protected else None
    return next((p for p in protected if path.endswith("/" + p)), None)


def changes_found(protected: dict[str, str], found: WorkspaceFiles) -> list[ProtectedFileChange]:
    """The protected files changed or deleted since the iteration started, in path order."""
    now = {file.path: file.digest for file in found.protected}
    changed: list[ProtectedFileChange] = []
    for path, digest in sorted(protected.items()):
        if path not in now:
            changed.append(ProtectedFileChange(path=path, change="deleted"))
        elif now[path] != digest:
            changed.append(ProtectedFileChange(path=path, change="modified", digest=now[path]))
    return changed


class Source(NamedTuple):
    """Where the bytes to put a changed file back are: in the `iteration.started` at `seq`,
    under `digest`."""

    path: str
    digest: str
    seq: int


def restorable(iterations: Iterations) -> tuple[list[Source], list[str]]:
    """Where the bytes of each changed file (as the iteration started) are, and the changed
    files whose bytes the session never recorded (too big to keep, or a link)."""
    sources: list[Source] = []
    missing: list[str] = []
    for change in iterations.changes:
        digest = iterations.protected.get(change.path, "")
        seq = iterations.content_seqs.get(digest)
        if seq is None:
            missing.append(change.path)
        else:
            sources.append(Source(path=change.path, digest=digest, seq=seq))
    return sources, missing
