"""The tools a sandbox offers: each input is a Struct, and the model sees its JSON Schema."""

from __future__ import annotations

import inspect
from typing import Any, Final

import msgspec


class BashInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Run a bash command in the workspace; its whole process group dies on timeout."""

    command: str
    timeout_s: float = 120.0


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
    """Replace `old_string`, which must occur exactly once in the file, by `new_string`."""

    path: str
    old_string: str
    new_string: str


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
    )
}
