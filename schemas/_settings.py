"""Settings from the environment, the same way in every process.

A process's settings are one frozen Struct whose fields name their variable and say what
they are (`setting("KEEL_LEASE_S", "...")`), resolved once at start (`settings_from_env`). A value
that does not convert fails the start with the variable's name and what it expected, never
a bare `ValueError` from deep inside. The README's table of every `KEEL_*` variable is
generated from the same Structs (`settings_table`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from msgspec import inspect

T = TypeVar("T", bound=msgspec.Struct)


class SettingsError(ValueError):
    """A `KEEL_*` variable holds a value its setting cannot take."""


def setting(variable: str, doc: str, *, shown: str | None = None) -> msgspec.Meta:
    """Annotate a settings field: `x: Annotated[float, setting("KEEL_X", "what x is")]`;
    `shown` is how the table shows a default that depends on the machine (a host name)."""
    extra = {"env": variable, "doc": doc} | ({} if shown is None else {"shown": shown})
    return msgspec.Meta(description=doc, extra=extra)


def settings_from_env(
    cls: type[T],
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> T:
    """`cls` with each field read from its variable when that is set (an empty variable
    counts as unset), nested settings Structs included; `overrides` that are not None win
    (command-line flags)."""
    env = os.environ if environ is None else environ
    values = _read(cls, env)
    values.update({name: value for name, value in (overrides or {}).items() if value is not None})
    return cls(**values)


def _read(cls: type[msgspec.Struct], env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in _fields(cls):
        kind = field.type
        variable = _variable(kind)
        if variable is not None:
            raw = env.get(variable, "")
            if raw != "":
                values[field.name] = _convert(variable, raw, _annotation(cls, field.name))
        elif isinstance(kind, inspect.StructType):
            nested = _read(kind.cls, env)
            if nested:
                default = field.default if field.default is not msgspec.NODEFAULT else None
                base = msgspec.structs.asdict(default) if default is not None else {}
                values[field.name] = kind.cls(**(base | nested))
    return values


def _convert(variable: str, raw: str, annotation: Any) -> Any:
    try:
        return msgspec.convert(raw, annotation, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        expected = describe(inspect.type_info(annotation))
        raise SettingsError(
            f"{variable}={raw!r} is not valid ({exc}); expected {expected}"
        ) from None


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


def _fields(cls: type[msgspec.Struct]) -> tuple[inspect.Field, ...]:
    info = inspect.type_info(cls)
    assert isinstance(info, inspect.StructType)
    return info.fields


def _annotation(cls: type[msgspec.Struct], name: str) -> Any:
    return next(f.type for f in msgspec.structs.fields(cls) if f.name == name)


def _variable(kind: inspect.Type) -> str | None:
    if isinstance(kind, inspect.Metadata) and kind.extra:
        variable = kind.extra.get("env")
        return variable if isinstance(variable, str) else None
    return None


def describe(kind: inspect.Type) -> str:
    """What a value of `kind` looks like, in words."""
    if isinstance(kind, inspect.Metadata):
        return describe(kind.type)
    match kind:
        case inspect.BoolType():
            return "1, 0, true or false"
        case inspect.IntType():
            return "a whole number"
        case inspect.FloatType():
            return "a number"
        case inspect.LiteralType(values=values):
            return "one of " + ", ".join(str(v) for v in values)
        case inspect.UnionType(types=types):
            return " or ".join(describe(t) for t in types if not isinstance(t, inspect.NoneType))
        case inspect.CustomType(cls=cls) if cls is Path:
            return "a path"
        case _:
            return "text"


class SettingRow(msgspec.Struct, frozen=True):
    variable: str
    default: str
    meaning: str


def setting_rows(
    cls: type[msgspec.Struct], instance: msgspec.Struct | None = None
) -> Iterator[SettingRow]:
    """Every variable of `cls` (nested settings included), with its default and meaning."""
    defaults = instance if instance is not None else cls()
    for field in _fields(cls):
        variable = _variable(field.type)
        value = getattr(defaults, field.name)
        if variable is not None:
            assert isinstance(field.type, inspect.Metadata) and field.type.extra is not None
            extra = field.type.extra
            yield SettingRow(variable, extra.get("shown") or _shown(value), extra["doc"])
        elif isinstance(field.type, inspect.StructType):
            yield from setting_rows(field.type.cls, value)


def _shown(value: object) -> str:
    if value is None or value == "":
        return "(unset)"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def settings_table(processes: Mapping[str, type[msgspec.Struct]]) -> str:
    """A Markdown table of every variable of every process."""
    lines = ["| variable | process | default | meaning |", "|---|---|---|---|"]
    for process, cls in processes.items():
        for row in setting_rows(cls):
            lines.append(f"| `{row.variable}` | {process} | `{row.default}` | {row.meaning} |")
    return "\n".join(lines) + "\n"
