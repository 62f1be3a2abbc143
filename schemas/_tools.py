"""The tools a sandbox offers: each input is a Struct, and the model sees its JSON Schema."""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Final

import msgspec

from schemas._events import HandoffFile, ProtectedFile

# A path in the workspace, relative to it (or absolute, inside it).
FilePath = Annotated[str, msgspec.Meta(min_length=1)]


class BashInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Run a bash command in the workspace; its whole process group dies on timeout.

    Each call starts a fresh shell in the workspace: the working directory, variables and
    background processes of one call do not carry over to the next. `restart` with no
    `command` therefore only confirms a clean shell. The timeout is `timeout_ms`
    milliseconds when given (0 means the default), else `timeout_s` seconds.
    """

    command: str | None = None
    timeout_s: float = 120.0
    restart: bool = False
    timeout_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None

    def __post_init__(self) -> None:
        if self.command is None and not self.restart:
            raise ValueError("`command` is required unless `restart` is true")


class ReadFileInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read a text file; optionally only lines start_line..end_line (1-based, inclusive)."""

    path: str
    start_line: int | None = None
    end_line: int | None = None


class WriteFileInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Create or overwrite a file with `content` (parent directories are created)."""

    path: str
    content: str


class EditFileInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Replace `old_string`, which must occur exactly once in the file, by `new_string`
    (every occurrence, with `replace_all`)."""

    path: str
    old_string: str
    new_string: str
    replace_all: bool = False


class ListFilesInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """List files under `path` whose path relative to it matches the glob `pattern`."""

    pattern: str = "**/*"
    path: str = "."


class GrepInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Search the files under `path` (a directory, or one file) for a Python regular
    expression; prints path:line:text for each match, the path relative to the workspace."""

    pattern: str
    path: str = "."
    glob: str | None = None
    ignore_case: bool = False
    max_matches: int = 500


class ReadInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read a text file in the workspace and return its text exactly (no line numbers added).

    `view_range` [start, end] returns only lines start to end, 1-based and inclusive; an
    end of -1 reads to the end of the file. `file_path` is relative to the workspace.
    """

    file_path: FilePath
    view_range: Annotated[list[int], msgspec.Meta(min_length=2, max_length=2)] | None = None

    def __post_init__(self) -> None:
        if self.view_range is None:
            return
        start, end = self.view_range
        if start < 1:
            raise ValueError("`view_range` starts at line 1 or later")
        if 0 < end < start:
            raise ValueError("`view_range` ends before it starts (use -1 to read to the end)")


class WriteInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Write `content` to the file at `file_path` in the workspace, replacing the whole file
    if it exists; missing parent directories are created."""

    file_path: FilePath
    content: str


class EditInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Replace `old_string` by `new_string` in the file at `file_path` in the workspace.

    `old_string` must match the file exactly, whitespace and indentation included, and
    occur exactly once (include enough surrounding lines to make it unique), unless
    `replace_all` is true, which replaces every occurrence.
    """

    file_path: FilePath
    old_string: str
    new_string: str
    replace_all: bool = False


class GlobInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Find files in the workspace by a glob `pattern`, matched against their path relative
    to the directory `path` (the workspace by default); `**` matches any number of
    directories, as in `**/*.py`. Prints the paths relative to the workspace, most recently
    modified first; files in .git are left out unless the pattern names .git."""

    pattern: str
    path: FilePath = "."


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    input_type: type[msgspec.Struct]
    # Safe to run again with the same input: the brain may retry it after a lost sandbox.
    idempotent: bool
    # May change the workspace: the sandbox checkpoints after it.
    mutating: bool

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema the model is given for this tool's input."""
        schema: dict[str, Any] = msgspec.json.schema(self.input_type)
        name = self.input_type.__name__
        definition: dict[str, Any] = schema["$defs"][name]
        return definition


def _spec(name: str, input_type: type[msgspec.Struct], *, idempotent: bool) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=inspect.cleandoc(input_type.__doc__ or ""),
        input_type=input_type,
        idempotent=idempotent,
        mutating=not idempotent,
    )


TOOLS: Final[dict[str, ToolSpec]] = {
    spec.name: spec
    for spec in (
        _spec("bash", BashInput, idempotent=False),
        _spec("read_file", ReadFileInput, idempotent=True),
        _spec("write_file", WriteFileInput, idempotent=False),
        _spec("edit_file", EditFileInput, idempotent=False),
        _spec("list_files", ListFilesInput, idempotent=True),
        _spec("grep", GrepInput, idempotent=True),
        # Anthropic's Managed Agents toolset (`agent_toolset_20260401`), by its names and inputs.
        _spec("read", ReadInput, idempotent=True),
        _spec("write", WriteInput, idempotent=False),
        _spec("edit", EditInput, idempotent=False),
        _spec("glob", GlobInput, idempotent=True),
    )
}


# -- the harness's own calls -------------------------------------------------------------------
# Sent by a brain, never by a model (no agent can name them): what context resets read from
# the workspace and how the test ratchet puts test files back.


class WorkspaceFilesInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The text of each file in `read` (up to `read_bytes` of it), and the sha256 of every
    file whose path matches a glob of `protected`, with the bytes of those whose digest is
    not in `known`, while they add up to at most `content_bytes`. First, with
    `stop_processes`, every process the sandbox's calls left running is killed."""

    read: list[str] = []
    read_bytes: Annotated[int, msgspec.Meta(ge=0)] = 16 * 1024
    protected: list[str] = []
    known: list[str] = []
    content_bytes: Annotated[int, msgspec.Meta(ge=0)] = 96 * 1024
    # Past this many protected files the read fails (it must fit in one message).
    max_protected: Annotated[int, msgspec.Meta(ge=0)] = 2000
    stop_processes: bool = False


class WorkspaceFiles(msgspec.Struct, frozen=True, kw_only=True):
    """What `workspace_files` answers (its output, as JSON)."""

    read: list[HandoffFile] = []
    protected: list[ProtectedFile] = []


class MergeWorkspaceInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Merge the work of a thread into this workspace (a git repository): what the
    thread's workspace checkpoint `checkpoint` holds is committed on `branch` there and
    merged here with `message`. Merging a branch already merged does nothing, so the call
    may run again. The hands host gives the executor the checkpoint's bytes."""

    checkpoint: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    branch: Annotated[str, msgspec.Meta(pattern=r"^keel/[A-Za-z0-9_.-]{1,100}$")]
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class RestoredFile(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    content: bytes


class RestoreFilesInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Make each path a regular file holding `content`: whatever is there now (a changed
    file, a link, a directory) and any link on the way to it is replaced."""

    files: list[RestoredFile]


HARNESS_TOOLS: Final[dict[str, ToolSpec]] = {
    spec.name: spec
    for spec in (
        # Reads: run again after a crash, they answer the same.
        ToolSpec(
            name="workspace_files",
            description=inspect.cleandoc(WorkspaceFilesInput.__doc__ or ""),
            input_type=WorkspaceFilesInput,
            idempotent=True,
            mutating=False,
        ),
        # Writes the recorded bytes: run again, it leaves the same workspace; checkpointed,
        # so a replacement sandbox never brings back what it undid.
        ToolSpec(
            name="restore_files",
            description=inspect.cleandoc(RestoreFilesInput.__doc__ or ""),
            input_type=RestoreFilesInput,
            idempotent=True,
            mutating=True,
        ),
        # A branch merged once is not merged again: run again, it changes nothing more.
        ToolSpec(
            name="merge_workspace",
            description=inspect.cleandoc(MergeWorkspaceInput.__doc__ or ""),
            input_type=MergeWorkspaceInput,
            idempotent=True,
            mutating=True,
        ),
    )
}
# The output a harness call may have inline: one NATS message, well under its 1 MB limit.
HARNESS_OUTPUT_BYTES: Final = 900_000
