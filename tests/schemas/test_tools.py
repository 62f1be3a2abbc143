"""The tools the model is offered: names, input schemas, idempotence, input validation."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from anthropic.types.beta import (
    BetaManagedAgentsAgentToolset20260401BashInput,
    BetaManagedAgentsAgentToolset20260401EditInput,
    BetaManagedAgentsAgentToolset20260401GlobInput,
    BetaManagedAgentsAgentToolset20260401GrepInput,
    BetaManagedAgentsAgentToolset20260401ReadInput,
    BetaManagedAgentsAgentToolset20260401WriteInput,
)
from pydantic import BaseModel

from schemas import TOOLS, BashInput, EditInput, ReadInput

# Anthropic's Managed Agents toolset (`agent_toolset_20260401`), as its SDK declares it.
TOOLSET: dict[str, type[BaseModel]] = {
    "bash": BetaManagedAgentsAgentToolset20260401BashInput,
    "read": BetaManagedAgentsAgentToolset20260401ReadInput,
    "write": BetaManagedAgentsAgentToolset20260401WriteInput,
    "edit": BetaManagedAgentsAgentToolset20260401EditInput,
    "glob": BetaManagedAgentsAgentToolset20260401GlobInput,
    "grep": BetaManagedAgentsAgentToolset20260401GrepInput,
}


def test_every_tool_has_a_schema_and_declares_idempotence() -> None:
    assert set(TOOLS) == {
        *("bash", "read_file", "write_file", "edit_file", "list_files", "grep"),
        *("read", "write", "edit", "glob"),
    }
    assert {name for name, spec in TOOLS.items() if spec.idempotent} == {
        *("read_file", "list_files", "grep", "read", "glob")
    }
    assert all(spec.mutating is not spec.idempotent for spec in TOOLS.values())
    bash = TOOLS["bash"].input_schema
    assert bash["properties"]["timeout_s"]["type"] == "number"
    assert TOOLS["edit_file"].description.startswith("Replace `old_string`")


def test_the_toolset_inputs_are_the_ones_the_model_sees() -> None:
    schemas = {name: TOOLS[name].input_schema for name in TOOLSET}
    assert set(schemas["bash"]["properties"]) >= {"command", "restart", "timeout_ms"}
    assert schemas["bash"]["required"] == []  # `command` may be left out to restart
    assert set(schemas["read"]["properties"]) == {"file_path", "view_range"}
    assert schemas["read"]["required"] == ["file_path"]
    assert schemas["read"]["properties"]["view_range"]["anyOf"][0] == {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 2,
        "maxItems": 2,
    }
    assert set(schemas["write"]["properties"]) == {"file_path", "content"}
    assert schemas["write"]["required"] == ["file_path", "content"]
    assert set(schemas["edit"]["properties"]) == {
        *("file_path", "old_string", "new_string", "replace_all")
    }
    assert schemas["edit"]["required"] == ["file_path", "old_string", "new_string"]
    assert set(schemas["glob"]["properties"]) == {"pattern", "path"}
    assert schemas["glob"]["required"] == ["pattern"]
    assert set(schemas["grep"]["properties"]) >= {"pattern", "path"}
    assert schemas["grep"]["required"] == ["pattern"]
    for name, spec in TOOLS.items():
        assert spec.input_schema["additionalProperties"] is False, name
        # The docstring, dedented: the model sees no source indentation.
        assert "\n    " not in spec.description and spec.description.endswith("."), name


@pytest.mark.parametrize("name", sorted(TOOLSET))
def test_each_toolset_input_matches_the_sdks(name: str) -> None:
    """keel takes every field the SDK names and requires exactly what the SDK requires."""
    model = TOOLSET[name]
    schema = TOOLS[name].input_schema
    assert set(model.model_fields) <= set(schema["properties"])
    assert set(schema["required"]) == {
        f for f, info in model.model_fields.items() if info.is_required()
    }


@pytest.mark.parametrize(
    ("name", "sdk_input"),
    [
        ("bash", BetaManagedAgentsAgentToolset20260401BashInput(command="ls", timeout_ms=500)),
        ("bash", BetaManagedAgentsAgentToolset20260401BashInput(restart=True)),
        ("read", BetaManagedAgentsAgentToolset20260401ReadInput(file_path="a", view_range=[2, -1])),
        ("write", BetaManagedAgentsAgentToolset20260401WriteInput(file_path="a", content="x")),
        (
            "edit",
            BetaManagedAgentsAgentToolset20260401EditInput(
                file_path="a", old_string="x", new_string="y", replace_all=True
            ),
        ),
        ("glob", BetaManagedAgentsAgentToolset20260401GlobInput(pattern="**/*.py", path="src")),
        ("grep", BetaManagedAgentsAgentToolset20260401GrepInput(pattern="x", path="src")),
    ],
)
def test_an_input_the_sdk_builds_is_valid(name: str, sdk_input: BaseModel) -> None:
    data = sdk_input.model_dump(exclude_none=True)
    assert msgspec.to_builtins(msgspec.convert(data, TOOLS[name].input_type)).items() >= (
        data.items()
    )


@pytest.mark.parametrize(
    ("input_type", "data", "error"),
    [
        (BashInput, {}, "`command` is required unless `restart` is true"),
        (BashInput, {"restart": False, "timeout_ms": 5}, "`command` is required"),
        (BashInput, {"command": "ls", "timeout_ms": -1}, "Expected `int` >= 0 - at `$.timeout_ms`"),
        (ReadInput, {"file_path": ""}, "Expected `str` of length >= 1 - at `$.file_path`"),
        (ReadInput, {"file_path": "a", "view_range": [1]}, "length >= 2 - at `$.view_range`"),
        (ReadInput, {"file_path": "a", "view_range": [0, 3]}, "starts at line 1 or later"),
        (ReadInput, {"file_path": "a", "view_range": [5, 3]}, "ends before it starts"),
        (ReadInput, {"path": "a"}, "Object contains unknown field `path`"),
        (EditInput, {"file_path": "a", "old_string": "x"}, "missing required field `new_string`"),
    ],
)
def test_a_malformed_input_is_a_clear_validation_error(
    input_type: type[msgspec.Struct], data: dict[str, Any], error: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(error)):
        msgspec.convert(data, input_type)


@pytest.mark.parametrize("view_range", [[3, -1], [3, 0], [3, 3], [3, 9]])
def test_a_view_range_may_end_anywhere_from_its_start(view_range: list[int]) -> None:
    data = {"file_path": "a", "view_range": view_range}
    assert msgspec.convert(data, ReadInput).view_range == view_range
