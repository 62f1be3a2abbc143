"""The models file: routes in order, patterns, the built-in routes, and strict checking."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas import (
    ModelRoute,
    ModelRoutes,
    ModelsFileError,
    ModelSpec,
    SettingsError,
    UnknownModel,
    load_model_routes,
    resolve_model,
)

MODELS = """
# the operator's models
[[route]]
match = "qwen2.5-coder"
provider = "openai"
base_url = "http://gpu:8000/v1"
api_key_env = "VLLM_API_KEY"
name = "Qwen/Qwen2.5-Coder-32B-Instruct"
max_output_tokens = 8192

[[route]]
match = "qwen*"
provider = "openai"
base_url = "http://ollama:11434/v1"

[[route]]
match = "claude-opus-*"
provider = "anthropic"
base_url = "https://llm-proxy.internal"
api_key_env = "PROXY_KEY"
options = { usd_per_mtok_input = 5.0, usd_per_mtok_output = 25.0 }

[[route]]
match = "ci-model"
provider = "keel-scripted"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def routes(tmp_path: Path) -> ModelRoutes:
    return load_model_routes(write(tmp_path, MODELS))


def test_the_first_matching_route_wins(routes: ModelRoutes) -> None:
    assert resolve_model("qwen2.5-coder", routes) == ModelSpec(
        provider="openai",
        name="Qwen/Qwen2.5-Coder-32B-Instruct",
        max_output_tokens=8192,
        base_url="http://gpu:8000/v1",
        api_key_env="VLLM_API_KEY",
    )
    # The exact route came first; any other qwen goes to the pattern's server, under its id.
    assert resolve_model("qwen3:8b", routes) == ModelSpec(
        provider="openai", name="qwen3:8b", base_url="http://ollama:11434/v1"
    )


def test_patterns_match_the_whole_id_case_sensitively(routes: ModelRoutes) -> None:
    with pytest.raises(UnknownModel):
        resolve_model("my-qwen", routes)
    with pytest.raises(UnknownModel):
        resolve_model("Qwen3", routes)
    with pytest.raises(UnknownModel):
        resolve_model("ci-model-2", routes)


def test_the_files_routes_come_before_the_built_in_ones(routes: ModelRoutes) -> None:
    opus = resolve_model("claude-opus-4-6", routes)
    assert (opus.provider, opus.base_url, opus.api_key_env) == (
        "anthropic",
        "https://llm-proxy.internal",
        "PROXY_KEY",
    )
    assert opus.options == {"usd_per_mtok_input": 5.0, "usd_per_mtok_output": 25.0}
    # Past the file: the built-in claude-* route, Anthropic's own API and key.
    assert resolve_model("claude-sonnet-4-5", routes) == ModelSpec(
        provider="anthropic", name="claude-sonnet-4-5"
    )
    assert resolve_model("ci-model", routes) == ModelSpec(provider="keel-scripted", name="ci-model")


def test_without_a_file_only_the_built_in_routes_serve() -> None:
    routes = load_model_routes(None)
    assert resolve_model("keel-scripted", routes) == ModelSpec(
        provider="keel-scripted", name="keel-scripted"
    )
    assert resolve_model("claude-haiku-4-5", routes) == ModelSpec(
        provider="anthropic", name="claude-haiku-4-5"
    )
    with pytest.raises(UnknownModel) as caught:
        resolve_model("gpt-4.1", routes)
    assert str(caught.value) == (
        "unknown model 'gpt-4.1': no built-in route (keel-scripted, claude-*) matches it, "
        "and KEEL_MODELS_FILE is not set"
    )


def test_an_unknown_id_names_the_id_and_the_file(routes: ModelRoutes) -> None:
    with pytest.raises(ValueError) as caught:
        resolve_model("gpt-4.1", routes)
    assert isinstance(caught.value, UnknownModel)
    assert (caught.value.model_id, caught.value.source) == ("gpt-4.1", routes.source)
    assert str(caught.value) == (
        f"unknown model 'gpt-4.1': no route in {routes.source} matches it, "
        "nor does a built-in one (keel-scripted, claude-*)"
    )


def test_a_file_can_route_a_built_in_id_elsewhere() -> None:
    mine = ModelRoutes(routes=(ModelRoute(match="keel-scripted", provider="openai"),))
    assert resolve_model("keel-scripted", mine).provider == "openai"


def test_an_empty_file_routes_like_no_file(tmp_path: Path) -> None:
    routes = load_model_routes(write(tmp_path, "# nothing yet\n"))
    assert routes.routes == ()
    assert resolve_model("keel-scripted", routes).provider == "keel-scripted"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[[route]]\nmatch = "x"\nprovider = "openai"\ntemprature = 0.2\nmodel = "y"\n',
            "route 1 (match = 'x'): unknown keys model, temprature (known: match, provider, "
            "base_url, api_key_env, name, max_output_tokens, options)",
        ),
        ('[[routes]]\nmatch = "x"\n', "unknown top-level keys routes"),
        ('[[route]]\nmatch = "x"\nprovider = "gemini"\n', "route 1 (match = 'x'): Invalid enum"),
        ('[[route]]\nprovider = "openai"\n', "route 1: Object missing required field `match`"),
        ('[[route]]\nmatch = ""\nprovider = "openai"\n', "route 1 (match = ''): Expected `str`"),
        (
            '[[route]]\nmatch = "a"\nprovider = "openai"\n[[route]]\nmatch = "b"\n'
            'provider = "openai"\nmax_output_tokens = 0\n',
            "route 2 (match = 'b'): Expected `int` >= 1",
        ),
        (
            '[[route]]\nmatch = "a"\nprovider = "openai"\napi_key_env = "MY KEY"\n',
            "route 1 (match = 'a'): Expected `str` matching regex",
        ),
        ('route = { match = "a", provider = "openai" }\n', "`route` must be an array of tables"),
        ("route = [1]\n", "route 1 must be a table"),
        ('[[route]\nmatch = "a"\n', "not valid TOML"),
    ],
)
def test_a_bad_file_fails_naming_the_file_and_the_fault(
    tmp_path: Path, text: str, error: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ModelsFileError) as caught:
        load_model_routes(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert error in str(caught.value)


def test_a_missing_file_fails_as_a_bad_setting(tmp_path: Path) -> None:
    path = str(tmp_path / "nowhere.toml")
    with pytest.raises(SettingsError) as caught:
        load_model_routes(path)
    assert str(caught.value) == f"{path}: cannot read the models file (No such file or directory)"


@pytest.mark.parametrize(
    "match",
    ["claude-*", "qwen?.5", "gpt-[45]*", "a[!b]c", "x.y+z(1)", "ci-model", "[*]", "a\\b*"],
)
def test_the_id_pattern_serves_exactly_what_the_routes_resolve(tmp_path: Path, match: str) -> None:
    """What the served OpenAPI document shows an agent's model may be (a regular
    expression) is what the routes serve (fnmatch patterns), id for id."""
    routes = ModelRoutes(routes=(ModelRoute(match=match, provider="openai"),))
    pattern = re.compile(routes.id_pattern())
    ids = ["claude-x", "claude-", "claud", "qwen2.5", "qwen22.5", "gpt-4o", "gpt-3", "aXc"]
    ids += ["abc", "x.y+z(1)", "xzy+z(1)", "ci-model", "ci-model-2", "*", "x", "a\\bc"]
    ids += ["keel-scripted", "", "\n", "ci-model\n", "claude-\n"]
    for model_id in ids:
        try:
            resolve_model(model_id, routes)
            served = True
        except UnknownModel:
            served = False
        assert bool(pattern.match(model_id)) == served, (match, model_id)
