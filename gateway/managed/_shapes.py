"""The Managed Agents API's bodies, as the `anthropic` SDK sends and reads them.

Requests forbid unknown fields: a field keel does not serve is a clear 4xx, never silently
ignored. Responses carry every field the SDK's models read (it builds them without
validation, so a missing one would surface as an AttributeError in the user's program).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

# The Managed Agents toolset's tools, all of which keel runs in its sandboxes but the two
# that need the network.
TOOLSET: Final = "agent_toolset_20260401"
TOOLSET_TOOLS: Final = ("bash", "edit", "read", "write", "glob", "grep")
NETWORK_TOOLS: Final = ("web_fetch", "web_search")

Metadata = Annotated[dict[str, str], msgspec.Meta(max_length=16)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class PermissionPolicy(_Request, frozen=True):
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


class CustomToolParams(_Request, tag="custom", tag_field="type", frozen=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
    description: str
    input_schema: dict[str, Any]


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
    """agents.create; agents.update sends the same fields, each optional, and `version`."""

    name: Name | None = None
    model: str | ModelConfig | None = None
    system: str | None = None
    description: str | None = None
    tools: list[ToolParams] | None = None
    mcp_servers: list[dict[str, Any]] | None = None
    skills: list[dict[str, Any]] | None = None
    # A patch on update: a key sent as null is removed.
    metadata: dict[str, str | None] | None = None
    multiagent: dict[str, Any] | None = None
    execution_identity: dict[str, Any] | None = None
    version: int | None = None


class Networking(_Request, frozen=True):
    type: Literal["unrestricted", "limited"]
    allowed_hosts: list[str] = []
    allow_mcp_servers: bool = False
    allow_package_managers: bool = False


class EnvironmentConfig(_Request, frozen=True):
    type: Literal["cloud", "self_hosted"]
    networking: Networking | None = None
    packages: dict[str, Any] | None = None


class EnvironmentParams(_Request, frozen=True):
    name: Name | None = None
    config: EnvironmentConfig | None = None
    description: str | None = None
    metadata: dict[str, str | None] | None = None
    scope: Literal["organization", "account"] | None = None


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
    resources: list[dict[str, Any]] = []
    vault_ids: list[str] = []


class SessionUpdateParams(_Request, frozen=True):
    title: str | None = None
    metadata: dict[str, str | None] | None = None
    budget: BudgetParams | None = None
    agent: dict[str, Any] | None = None
    vault_ids: list[str] | None = None


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """A cursor page as the SDK reads it: it asks again with `page=next_page` until null."""

    data: list[Any]
    next_page: str | None = None
    prev_page: str | None = None


class Deleted(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
