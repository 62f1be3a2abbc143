"""Which model an id names: the operator's models file, then keel's built-in routes.

An agent names its model by an id (`claude-sonnet-4-5`, `qwen2.5-coder`, `keel-scripted`);
`resolve_model(id, routes)` turns it into the `ModelSpec` a brain calls. The models file
(`KEEL_MODELS_FILE`) is TOML, a list of routes tried in order, the first that matches winning:

    [[route]]
    match = "qwen*"                      # an exact id, or an fnmatch pattern (* ? [seq])
    provider = "openai"                  # anthropic, openai or keel-scripted
    base_url = "http://gpu:8000/v1"      # optional: the server, else the provider's own
    api_key_env = "VLLM_API_KEY"         # optional: the brain's variable holding the key
    name = "Qwen/Qwen2.5-Coder-32B"      # optional: the name sent upstream, else the id
    max_output_tokens = 8192             # optional, else 4096
    options = { usd_per_mtok_input = 0.2 }  # optional: the provider's knobs (prices, ...)

After the file's routes come the built-in ones: `keel-scripted`, the rule-based model, and
`claude-*`, Anthropic's API. The file is read once (`load_model_routes`) and checked strictly:
a key no route knows, a value of the wrong type, or bad TOML fails with the file's name and
what is wrong (`ModelsFileError`, a `SettingsError`). An id no route matches is an
`UnknownModel` (a `ValueError`) naming the id and the file: the gateway answers it with a 400.
The key itself never appears here, only the name of the variable the brain reads it from.
"""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatchcase
from typing import Annotated, Final, Literal

import msgspec

from schemas._agent import EnvName, ModelSpec
from schemas._settings import SettingsError

Text = Annotated[str, msgspec.Meta(min_length=1)]


class ModelsFileError(SettingsError):
    """The models file cannot be read, or is not a valid list of routes."""


class UnknownModel(ValueError):
    """No route serves the model id."""

    def __init__(self, model_id: str, source: str | None) -> None:
        self.model_id = model_id
        self.source = source
        builtin = _listed([route.match for route in BUILTIN_ROUTES])
        if source:
            why = f"no route in {source} matches it, nor does a built-in one ({builtin})"
        else:
            why = f"no built-in route ({builtin}) matches it, and KEEL_MODELS_FILE is not set"
        super().__init__(f"unknown model {model_id!r}: {why}")


class ModelRoute(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which provider serves the ids `match` matches, and how."""

    match: Text
    provider: Literal["anthropic", "openai", "keel-scripted"]
    base_url: Text | None = None
    api_key_env: EnvName | None = None
    name: Text | None = None
    max_output_tokens: Annotated[int, msgspec.Meta(gt=0)] | None = None
    options: dict[str, object] = {}

    def spec_for(self, model_id: str) -> ModelSpec:
        spec = ModelSpec(
            provider=self.provider,
            name=self.name or model_id,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            options=dict(self.options),
        )
        if self.max_output_tokens is None:
            return spec  # the spec's own default
        return msgspec.structs.replace(spec, max_output_tokens=self.max_output_tokens)


class ModelRoutes(msgspec.Struct, frozen=True, kw_only=True):
    """The routes of a models file, in its order, and which file it was (None: no file)."""

    routes: tuple[ModelRoute, ...] = ()
    source: str | None = None

    def id_pattern(self) -> str:
        """Every model id these routes (and the built-in ones) serve, as one regular
        expression that Python and JSON Schema both read: each `match` translated."""
        matches = [route.match for route in (*self.routes, *BUILTIN_ROUTES)]
        # `(?![\s\S])` is the very end in both (Python's `$` also matches before a final
        # newline), and `[\s\S]` any character, newlines too, as fnmatch's `*` and `?` take.
        return "^(?:" + "|".join(_as_regex(match) for match in matches) + ")(?![\\s\\S])"


BUILTIN_ROUTES: Final = (
    ModelRoute(match="keel-scripted", provider="keel-scripted"),
    ModelRoute(match="claude-*", provider="anthropic"),
)
_FIELDS: Final = frozenset(ModelRoute.__struct_fields__)


def _as_regex(match: str) -> str:
    """An fnmatch pattern (`*`, `?`, `[seq]`, `[!seq]`) as a regular expression."""
    out = []
    for part in re.split(r"(\*|\?|\[!?[^\]]+\])", match):
        if part == "*":
            out.append("[\\s\\S]*")
        elif part == "?":
            out.append("[\\s\\S]")
        elif len(part) > 2 and part.startswith("[") and part.endswith("]"):
            negated = part.startswith("[!")
            members = part[2 if negated else 1 : -1].replace("\\", "\\\\")
            out.append(f"[{'^' if negated else ''}{members}]")
        else:
            # Only what is special in both dialects: `re.escape` also escapes `-`, which
            # an ECMAScript pattern in unicode mode refuses.
            out.append(re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", part))
    return "".join(out)


def resolve_model(model_id: str, routes: ModelRoutes) -> ModelSpec:
    """The spec of the first route (the file's, then the built-in ones) that matches the id.

    Raises UnknownModel when none does.
    """
    for route in (*routes.routes, *BUILTIN_ROUTES):
        if fnmatchcase(model_id, route.match):
            return route.spec_for(model_id)
    raise UnknownModel(model_id, routes.source)


def load_model_routes(path: str | None) -> ModelRoutes:
    """The routes of the models file at `path`; None: no file, the built-in routes only.

    Raises ModelsFileError, naming the file and what is wrong with it.
    """
    if path is None:
        return ModelRoutes()
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ModelsFileError(f"{path}: cannot read the models file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelsFileError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"route"})
    if unknown:
        raise ModelsFileError(
            f"{path}: unknown top-level keys {_listed(unknown)} (a models file holds [[route]]s)"
        )
    tables = data.get("route", [])
    if not isinstance(tables, list):
        raise ModelsFileError(f"{path}: `route` must be an array of tables, [[route]]")
    return ModelRoutes(
        routes=tuple(_route(path, number, table) for number, table in enumerate(tables, 1)),
        source=path,
    )


def _route(path: str, number: int, table: object) -> ModelRoute:
    if not isinstance(table, dict):
        raise ModelsFileError(f"{path}: route {number} must be a table, [[route]]")
    where = f"{path}: route {number}" + (
        f" (match = {table['match']!r})" if isinstance(table.get("match"), str) else ""
    )
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        known = _listed(ModelRoute.__struct_fields__)
        raise ModelsFileError(f"{where}: unknown keys {_listed(unknown)} (known: {known})")
    try:
        return msgspec.convert(table, ModelRoute)
    except msgspec.ValidationError as exc:
        raise ModelsFileError(f"{where}: {exc}") from None


def _listed(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(names)
