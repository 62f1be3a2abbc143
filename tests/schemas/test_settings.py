"""Settings from the environment: typed, named in every error, shown in one table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pytest

from schemas import SettingsError, setting, settings_from_env, settings_table


class Retry(msgspec.Struct, frozen=True, kw_only=True):
    attempts: Annotated[int, setting("KEEL_T_ATTEMPTS", "tries")] = 3
    delay_s: Annotated[float, setting("KEEL_T_DELAY_S", "between tries")] = 0.5


class Example(msgspec.Struct, frozen=True, kw_only=True):
    url: Annotated[str, setting("KEEL_T_URL", "where")] = "nats://here"
    lazy: Annotated[bool, setting("KEEL_T_LAZY", "wait less")] = True
    mode: Annotated[Literal["a", "b"], setting("KEEL_T_MODE", "which")] = "a"
    crash_at: Annotated[str | None, setting("KEEL_T_CRASH_AT", "a drill")] = None
    home: Annotated[Path, setting("KEEL_T_HOME", "files", shown="~/x")] = Path("/x")
    retry: Retry = Retry()
    internal: int = 7


def test_variables_are_read_into_their_types() -> None:
    env = {
        "KEEL_T_URL": "nats://there",
        "KEEL_T_LAZY": "0",
        "KEEL_T_MODE": "b",
        "KEEL_T_CRASH_AT": "",  # empty counts as unset
        "KEEL_T_HOME": "/srv/keel",
        "KEEL_T_DELAY_S": "2",
    }
    assert settings_from_env(Example, env) == Example(
        url="nats://there",
        lazy=False,
        mode="b",
        home=Path("/srv/keel"),
        retry=Retry(attempts=3, delay_s=2.0),
    )
    assert settings_from_env(Example, {}) == Example()
    assert settings_from_env(Example, env, {"url": "flag", "mode": None}).url == "flag"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("KEEL_T_DELAY_S", "soon", "expected a number"),
        ("KEEL_T_ATTEMPTS", "2.5", "expected a whole number"),
        ("KEEL_T_LAZY", "yes", "expected 1, 0, true or false"),
        ("KEEL_T_MODE", "c", "expected one of a, b"),
    ],
)
def test_a_bad_value_names_its_variable_and_what_it_expected(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_env(Example, {variable: value})
    assert str(caught.value).startswith(f"{variable}={value!r} is not valid")
    assert str(caught.value).endswith(expected)


def test_the_table_shows_every_variable_with_its_default_and_meaning() -> None:
    assert settings_table({"example": Example}).splitlines() == [
        "| variable | process | default | meaning |",
        "|---|---|---|---|",
        "| `KEEL_T_URL` | example | `nats://here` | where |",
        "| `KEEL_T_LAZY` | example | `1` | wait less |",
        "| `KEEL_T_MODE` | example | `a` | which |",
        "| `KEEL_T_CRASH_AT` | example | `(unset)` | a drill |",
        "| `KEEL_T_HOME` | example | `~/x` | files |",
        "| `KEEL_T_ATTEMPTS` | example | `3` | tries |",
        "| `KEEL_T_DELAY_S` | example | `0.5` | between tries |",
    ]
