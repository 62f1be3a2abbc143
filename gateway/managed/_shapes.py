"""The Managed Agents API's bodies, as the `anthropic` SDK sends and reads them.

Requests forbid unknown fields: a field keel does not serve is a clear 4xx, never silently
ignored. Responses carry every field the SDK's models read (it builds them without
validation, so a missing one would surface as an AttributeError in the user's program).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from gateway.managed._multiagent import AdvisorEntry, MultiagentParams
from schemas import ContextResets

# The Managed Agents toolset's tools, all of which keel runs in its sandboxes but the two
# that need the network.
TOOLSET: Final = "agent_toolset_20260401"
TOOLSET_TOOLS: Final = ("bash", "edit", "read", "write", "glob", "grep")
NETWORK_TOOLS: Final = ("web_fetch", "web_search")

Metadata = Annotated[dict[str, str], msgspec.Meta(max_length=16)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


# What the served OpenAPI document says of a field keel decodes only to refuse by name (a
# 400 saying what is not served yet): no value (`NOT_SERVED`), or an empty list
# (`NONE_SERVED`). Only the document is constrained: the decoder takes any value, so the
# refusal can name the field.
_WHY: Final = "not served by keel yet: refused with a 400 that names the field"
CONTEXT_RESETS_DESCRIPTION: Final = (
    "keel's extension: the agent's sessions work in iterations, each from a fresh context "
    "built of the goal, the rubric and handoff files, and the worker may not change test "
    "files it did not write (see keel's README)"
)
NOT_SERVED: Final = msgspec.Meta(extra_json_schema={"not": {}}, description=_WHY)
NONE_SERVED: Final = msgspec.Meta(extra_json_schema={"maxItems": 0}, description=_WHY)


class PermissionPolicy(_Request, frozen=True):
    # `auto` is refused by name (and left out of the served document).
    type: Literal["always_allow", "always_ask", "auto"]


class ToolConfig(_Request, frozen=True):
    name: str
    type: str | None = None
    enabled: bool | None = None
    permission_policy: PermissionPolicy | None = None


class ToolsetDefault(_Request, frozen=True):
    enabled: bool | None = None
    permission_policy: PermissionPolicy | None = None


class Toolset(_Request, tag=TOOLSET, tag_field="type", frozen=True):
    configs: list[ToolConfig] = []
    default_config: ToolsetDefault | None = None


# A custom tool's input: the JSON Schema of an object, kept whole (its other keywords too);
# the part the SDK reads back is checked (`input_schema_problem`) and documented here.
InputSchema = Annotated[
    dict[str, Any],
    msgspec.Meta(
        extra_json_schema={
            "required": ["type"],
            "properties": {
                "type": {"enum": ["object"]},
                "properties": {"type": "object"},
                "required": {"type": "array", "items": {"type": "string"}},
            },
        }
    ),
]


def input_schema_problem(schema: dict[str, Any]) -> str | None:
    """What keeps `schema` from being a custom tool's input schema, if anything."""
    if schema.get("type") != "object":
        return 'its "type" must be "object"'
    if not isinstance(schema.get("properties", {}), dict):
        return '"properties" must be an object'
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return '"required" must be a list of names'
    return None


class CustomToolParams(_Request, tag="custom", tag_field="type", frozen=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
    description: str
    input_schema: InputSchema


class McpToolset(msgspec.Struct, frozen=True, kw_only=True, tag="mcp_toolset", tag_field="type"):
    """Decoded only to be refused by name."""

    mcp_server_name: str = ""


ToolParams = Toolset | CustomToolParams | McpToolset


class ModelConfig(_Request, frozen=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    effort: str | dict[str, str] | None = None
    speed: Literal["standard", "fast"] | None = None
    inference_geo: str | None = None


class AgentParams(_Request, frozen=True):
    """agents.update: the fields sent replace the stored ones; `version` is the one the
    caller read, refused (409) unless it is still the latest."""

    name: Name | None = None
    model: str | ModelConfig | None = None
    system: str | None = None
    description: str | None = None
    tools: list[ToolParams] | None = None
    mcp_servers: Annotated[list[dict[str, Any]], NONE_SERVED] | None = None
    skills: Annotated[list[dict[str, Any]], NONE_SERVED] | None = None
    # A patch on update: a key sent as null is removed.
    metadata: dict[str, str | None] | None = None
    # The threads its sessions may spawn (`_multiagent`); on update, sent replaces stored.
    multiagent: MultiagentParams | None = None
    # Every agent runs as keel's service account: only that one is taken.
    execution_identity: (
        Annotated[
            dict[str, Any], msgspec.Meta(extra_json_schema={"enum": [{"type": "service_account"}]})
        ]
        | None
    ) = None
    version: int | None = None
    # keel's extension, not a field of the Managed Agents API (the SDK sends it in
    # `extra_body`): the agent's sessions work in iterations from fresh contexts. On update,
    # null removes it and leaving it out keeps it.
    keel_context_resets: (
        Annotated[ContextResets | None, msgspec.Meta(description=CONTEXT_RESETS_DESCRIPTION)]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class AgentCreateParams(AgentParams, frozen=True):
    """agents.create: a name and a model, and version 1."""

    name: Name
    model: str | ModelConfig
    version: Annotated[int, NOT_SERVED] | None = None


class Networking(_Request, frozen=True):
    """keel's sandboxes have no network: only `limited` to nothing is taken (and only that
    is in the served document)."""

    type: Literal["unrestricted", "limited"]
    allowed_hosts: Annotated[list[str], NONE_SERVED] = []
    allow_mcp_servers: Annotated[bool, msgspec.Meta(extra_json_schema={"enum": [False]})] = False
    allow_package_managers: Annotated[bool, msgspec.Meta(extra_json_schema={"enum": [False]})] = (
        False
    )


class Packages(_Request, frozen=True):
    """keel's sandboxes install nothing beyond their image: only empty lists are taken."""

    type: Literal["packages"] = "packages"
    apt: Annotated[list[str], NONE_SERVED] | None = None
    cargo: Annotated[list[str], NONE_SERVED] | None = None
    gem: Annotated[list[str], NONE_SERVED] | None = None
    go: Annotated[list[str], NONE_SERVED] | None = None
    npm: Annotated[list[str], NONE_SERVED] | None = None
    pip: Annotated[list[str], NONE_SERVED] | None = None

    def any_asked(self) -> bool:
        return any((self.apt, self.cargo, self.gem, self.go, self.npm, self.pip))


class EnvironmentConfig(_Request, frozen=True):
    """A `self_hosted` environment takes neither (the served document says so too)."""

    type: Literal["cloud", "self_hosted"]
    networking: Networking | None = None
    packages: Packages | None = None


class EnvironmentParams(_Request, frozen=True):
    """environments.update: the fields sent replace the stored ones."""

    name: Name | None = None
    config: EnvironmentConfig | None = None
    description: str | None = None
    metadata: dict[str, str | None] | None = None
    scope: Literal["organization", "account"] | None = None


class EnvironmentCreateParams(EnvironmentParams, frozen=True):
    """environments.create: a name, at least."""

    name: Name


class Money(_Request, frozen=True):
    # In minor units (cents), as a decimal string.
    amount: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,15}(\.[0-9]{1,6})?$")]
    currency: Literal["USD"] = "USD"


class BudgetParams(_Request, tag="limit", tag_field="type", frozen=True):
    max_list_cost: Money


class AgentRef(_Request, tag="agent", tag_field="type", frozen=True):
    id: str
    version: int | None = None


class AgentWithOverrides(msgspec.Struct, frozen=True, kw_only=True, tag="agent_with_overrides"):
    """Decoded only to be refused by name."""

    id: str = ""


class TextBlockParam(_Request, tag="text", tag_field="type", frozen=True):
    text: str


class OtherBlockParam(msgspec.Struct, frozen=True, kw_only=True, tag="image", tag_field="type"):
    """Images (and documents) are refused by name: keel's models are shown text only."""


class DocumentBlockParam(
    msgspec.Struct, frozen=True, kw_only=True, tag="document", tag_field="type"
):
    pass


ContentParam = TextBlockParam | OtherBlockParam | DocumentBlockParam


class UserMessageParams(_Request, tag="user.message", tag_field="type", frozen=True):
    content: Annotated[list[ContentParam], msgspec.Meta(min_length=1)]


class UserInterruptParams(_Request, tag="user.interrupt", tag_field="type", frozen=True):
    session_thread_id: str | None = None


class UserToolConfirmationParams(
    _Request, tag="user.tool_confirmation", tag_field="type", frozen=True
):
    tool_use_id: str
    result: Literal["allow", "deny"]
    deny_message: str | None = None
    session_thread_id: str | None = None


class UserCustomToolResultParams(
    _Request, tag="user.custom_tool_result", tag_field="type", frozen=True
):
    custom_tool_use_id: str
    content: list[ContentParam] = []
    is_error: bool = False


class UserToolResultParams(_Request, tag="user.tool_result", tag_field="type", frozen=True):
    tool_use_id: str
    content: list[ContentParam] = []
    is_error: bool = False


class RubricText(_Request, tag="text", tag_field="type", frozen=True):
    content: Annotated[str, msgspec.Meta(min_length=1)]


class RubricFile(msgspec.Struct, frozen=True, kw_only=True, tag="file", tag_field="type"):
    """Decoded only to be refused by name: keel has no files yet."""


# The default number of evaluations of an outcome, as the SDK documents it.
MAX_ITERATIONS: Final = 3


class UserDefineOutcomeParams(_Request, tag="user.define_outcome", tag_field="type", frozen=True):
    description: Annotated[str, msgspec.Meta(min_length=1)]
    rubric: RubricText | RubricFile
    # null, as the SDK may send it, is the default.
    max_iterations: Annotated[int, msgspec.Meta(ge=1, le=20)] | None = None


class SystemMessageParams(_Request, tag="system.message", tag_field="type", frozen=True):
    content: Annotated[list[TextBlockParam], msgspec.Meta(min_length=1)]


EventParams = (
    UserMessageParams
    | UserInterruptParams
    | UserToolConfirmationParams
    | UserCustomToolResultParams
    | UserToolResultParams
    | UserDefineOutcomeParams
    | SystemMessageParams
)


class SendEvents(_Request, frozen=True):
    events: Annotated[list[EventParams], msgspec.Meta(min_length=1, max_length=100)]


class SessionParams(_Request, frozen=True):
    """sessions.create."""

    agent: str | AgentRef | AgentWithOverrides
    environment_id: str
    title: str | None = None
    metadata: Metadata = {}
    initial_events: Annotated[
        list[UserMessageParams | UserDefineOutcomeParams], msgspec.Meta(max_length=50)
    ] = []
    budget: BudgetParams | None = None
    resources: Annotated[list[dict[str, Any]], NONE_SERVED] = []
    vault_ids: Annotated[list[str], NONE_SERVED] = []


class SessionUpdateParams(_Request, frozen=True):
    title: str | None = None
    metadata: dict[str, str | None] | None = None
    # A session's budget is set when it is made.
    budget: Annotated[dict[str, Any], NOT_SERVED] | None = None
    agent: Annotated[dict[str, Any], NOT_SERVED] | None = None
    vault_ids: Annotated[list[str], NONE_SERVED] | None = None


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """A cursor page as the SDK reads it: it asks again with `page=next_page` until null."""

    data: list[Any]
    next_page: str | None = None
    prev_page: str | None = None


class Deleted(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str


# Shapes decoded only to be refused by name: the served document leaves them out of the
# unions they are members of.
REFUSED: Final[tuple[type, ...]] = (
    McpToolset,
    AdvisorEntry,
    AgentWithOverrides,
    OtherBlockParam,
    DocumentBlockParam,
    RubricFile,
    SystemMessageParams,
)


MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=512)]


class WorkStopParams(_Request, frozen=True):
    force: bool = False


class WorkUpdateParams(_Request, frozen=True):
    # A patch: a key sent as null is removed.
    metadata: dict[MetadataKey, MetadataValue | None]


class EnvironmentKeyParams(_Request, frozen=True):
    name: Annotated[str, msgspec.Meta(max_length=128)] = ""


class EnvironmentKey(msgspec.Struct, frozen=True, kw_only=True):
    """A self-hosted environment's worker key (keel's extension), shown once."""

    id: str
    type: Literal["environment_key"] = "environment_key"
    environment_id: str
    name: str
    key: str
