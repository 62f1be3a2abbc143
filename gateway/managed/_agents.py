"""`/v1/agents`: versioned agents (create, retrieve a version, update with the optimistic
`version` check, list, archive, versions). Each version is stored whole, as the API shows it,
so a session pins exactly what it was made from."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Depends, Query, Request, Response

from gateway._access import QueryFirst, Tenant
from gateway._bodies import decode_body
from gateway._errors import ApiProblem
from gateway._services import GatewayServices, Services
from gateway.managed._common import (
    MAX_LIMIT,
    ResourceQuery,
    answer,
    decode_stored,
    page,
    patched,
    refuse,
    resource_view,
    stored,
)
from gateway.managed._models import check_model
from gateway.managed._multiagent import resolve, shown
from gateway.managed._shapes import (
    NETWORK_TOOLS,
    TOOLSET,
    TOOLSET_TOOLS,
    AgentCreateParams,
    AgentParams,
    CustomToolParams,
    McpToolset,
    ModelConfig,
    Toolset,
    input_schema_problem,
)
from session_store import Resource

router = APIRouter(route_class=QueryFirst, tags=["managed agents"])

KIND: Final = "agent"
_SERVICE_ACCOUNT: Final = {"type": "service_account"}


def agent_view(resource: Resource) -> dict[str, Any]:
    view = {**resource_view(resource, KIND), "version": resource.version}
    view["multiagent"] = shown(view.get("multiagent"), resource.resource_id, resource.version)
    return view


@router.post("/v1/agents", response_class=Response)
async def create_agent(tenant: Tenant, request: Request, services: Services) -> Response:
    """Create an agent (version 1)."""
    params = await decode_body(request, AgentCreateParams)
    if params.version is not None:
        raise refuse("version", "a new agent starts at version 1")
    multiagent = await _multiagent(params, tenant, services, None)
    body = _body(params, None, multiagent)
    return answer(agent_view(await services.store.put_resource(tenant, KIND, stored(body))))


@router.get("/v1/agents/{agent_id}", response_class=Response)
async def retrieve_agent(
    agent_id: str,
    tenant: Tenant,
    services: Services,
    version: Annotated[int | None, Query(ge=1, le=2**53)] = None,
) -> Response:
    """An agent: its latest version, or `version`."""
    return answer(agent_view(await services.store.get_resource(tenant, KIND, agent_id, version)))


@router.post("/v1/agents/{agent_id}", response_class=Response)
async def update_agent(
    agent_id: str, tenant: Tenant, request: Request, services: Services
) -> Response:
    """A new version: fields sent replace the stored ones (metadata is a patch). With
    `version`, refused (409) unless that is still the latest: no lost update."""
    params = await decode_body(request, AgentParams)
    current = await services.store.get_resource(tenant, KIND, agent_id)
    if current.archived_at is not None:
        raise ApiProblem(409, f"agent {agent_id} is archived")
    stored_body = decode_stored(current.body)
    multiagent = await _multiagent(params, tenant, services, stored_body.get("multiagent"))
    body = _body(params, agent_view(current), multiagent)
    updated = await services.store.put_resource(
        tenant, KIND, stored(body), resource_id=agent_id, expect_version=params.version
    )
    return answer(agent_view(updated))


@router.get("/v1/agents", response_class=Response)
async def list_agents(
    tenant: Tenant, services: Services, query: Annotated[ResourceQuery, Depends()]
) -> Response:
    """The tenant's agents (latest versions), newest first."""
    return await query.answer(services.store, tenant, KIND, agent_view)


@router.post("/v1/agents/{agent_id}/archive", response_class=Response)
async def archive_agent(agent_id: str, tenant: Tenant, services: Services) -> Response:
    """Archive an agent: it is listed only when asked for, and no new session is made of it."""
    return answer(agent_view(await services.store.archive_resource(tenant, KIND, agent_id)))


@router.get("/v1/agents/{agent_id}/versions", response_class=Response)
async def list_agent_versions(
    agent_id: str,
    tenant: Tenant,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    page_: Annotated[str | None, Query(alias="page", pattern=r"^[0-9]{1,15}$")] = None,
) -> Response:
    """An agent's versions, newest first."""
    found = await services.store.resource_versions(
        tenant, KIND, agent_id, limit=limit, before_version=int(page_) if page_ else None
    )
    return page([agent_view(r) for r in found.items], found.next_cursor)


async def _multiagent(
    params: AgentParams, tenant: str, services: GatewayServices, stored: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The stored `multiagent` of the next version: the one sent, resolved, else the one
    stored (kept as stored: `self` stays the agent itself)."""
    if params.multiagent is None:
        return stored
    return await resolve(params.multiagent, tenant, services.store)


def _body(
    params: AgentParams, current: dict[str, Any] | None, multiagent: dict[str, Any] | None
) -> dict[str, Any]:
    """The stored body of the next version: `params` over `current` (None: a new agent),
    with every default resolved, so what a session pins is complete."""
    _refuse_unsupported(params)
    base = current or {}
    model = params.model if params.model is not None else base["model"]
    if isinstance(model, str):
        model = {"id": model}
    elif isinstance(model, ModelConfig):
        model = {k: v for k, v in (("id", model.id), ("speed", model.speed)) if v is not None}
    check_model(model["id"])
    tools = _tools(params.tools) if params.tools is not None else base.get("tools", [])
    resets = (
        base.get("keel_context_resets")
        if params.keel_context_resets is msgspec.UNSET
        else msgspec.to_builtins(params.keel_context_resets)
    )
    body = {
        "name": params.name if params.name is not None else base["name"],
        "model": model,
        "system": params.system if params.system is not None else base.get("system"),
        "description": (
            params.description if params.description is not None else base.get("description")
        ),
        "tools": tools,
        "skills": [],
        "mcp_servers": [],
        "metadata": patched(base.get("metadata", {}), params.metadata),
        "multiagent": multiagent,
        "execution_identity": _SERVICE_ACCOUNT,
    }
    # Shown only when set: an agent without it is exactly the API's.
    return body if resets is None else {**body, "keel_context_resets": resets}


def _refuse_unsupported(params: AgentParams) -> None:
    if params.mcp_servers:
        raise refuse("mcp_servers", "keel does not connect agents to MCP servers yet")
    if params.skills:
        raise refuse("skills", "keel does not serve skills yet")
    if params.execution_identity not in (None, _SERVICE_ACCOUNT):
        raise refuse("execution_identity", "keel runs every agent as its service account")


def _tools(tools: list[Toolset | CustomToolParams | McpToolset]) -> list[dict[str, Any]]:
    resolved: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        match tool:
            case McpToolset():
                raise refuse(where, "keel does not connect agents to MCP servers yet")
            case CustomToolParams(name=name):
                if name in names:
                    raise ApiProblem(400, f"{where}: a second tool named {name!r}")
                problem = input_schema_problem(tool.input_schema)
                if problem is not None:
                    raise ApiProblem(422, f"{where}.input_schema: {problem}")
                names.add(name)
                resolved.append(
                    {
                        "type": "custom",
                        "name": name,
                        "description": tool.description,
                        "input_schema": tool.input_schema,
                    }
                )
            case Toolset():
                resolved.append(_toolset(tool, where))
                names.update(TOOLSET_TOOLS)
    return resolved


def _toolset(toolset: Toolset, where: str) -> dict[str, Any]:
    default = toolset.default_config
    default_enabled = True if default is None or default.enabled is None else default.enabled
    default_policy = (
        default.permission_policy.type
        if default is not None and default.permission_policy is not None
        else "always_allow"
    )
    configs = {config.name: config for config in toolset.configs}
    unknown = sorted(set(configs) - {*TOOLSET_TOOLS, *NETWORK_TOOLS})
    if unknown:
        raise ApiProblem(400, f"{where}.configs: no tool {unknown[0]!r} in {TOOLSET}")
    out = []
    for name in (*TOOLSET_TOOLS, *NETWORK_TOOLS):
        config = configs.get(name)
        enabled = default_enabled if config is None or config.enabled is None else config.enabled
        policy = (
            config.permission_policy.type
            if config is not None and config.permission_policy is not None
            else default_policy
        )
        if policy == "auto":
            raise refuse(f"{where} {name}.permission_policy", "keel has no `auto` policy yet")
        if name in NETWORK_TOOLS:
            if config is not None and config.enabled:
                raise refuse(
                    f"{where}.configs[{name}]",
                    "keel's sandboxes have no network, so it offers no web tools",
                )
            enabled = False
        out.append(
            {
                "type": name,
                "name": name,
                "enabled": enabled,
                "permission_policy": {"type": policy},
            }
        )
    return {
        "type": TOOLSET,
        "configs": out,
        "default_config": {
            "enabled": default_enabled,
            "permission_policy": {"type": default_policy},
        },
    }
