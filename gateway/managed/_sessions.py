"""Sessions in the Managed Agents shapes: made from an agent version and an environment,
idle between turns, listed with the SDK's pages and filters, updated, archived, deleted.

Served at `/v1/sessions…` to requests that send `anthropic-beta: managed-agents-…`
(`gateway._dialect`), and under `MANAGED_PREFIX` to any."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import msgspec
from fastapi import APIRouter, Query, Request, Response

from gateway._access import QueryFirst, Tenant
from gateway._bodies import decode_body
from gateway._dialect import MANAGED_PREFIX
from gateway._errors import ApiProblem
from gateway._idempotency import Keys
from gateway._services import GatewayServices, Services
from gateway.managed._agents import KIND as AGENT
from gateway.managed._agents import agent_view
from gateway.managed._common import (
    MAX_LIMIT,
    ManagedSession,
    ManagedWorkerSession,
    answer,
    decode_stored,
    instant,
    patched,
    refuse,
    time_filter,
    time_query,
)
from gateway.managed._environments import KIND as ENVIRONMENT
from gateway.managed._models import model_spec
from gateway.managed._multiagent import roster
from gateway.managed._projection import (
    Projection,
    budget_view,
    managed_status,
    rfc3339,
    usage_view,
)
from gateway.managed._shapes import (
    TOOLSET,
    AgentWithOverrides,
    BudgetParams,
    Deleted,
    SessionParams,
    SessionUpdateParams,
    UserDefineOutcomeParams,
)
from gateway.managed._user_events import outcome_defined, user_message
from schemas import (
    AgentSpec,
    Budgets,
    ContextResets,
    CustomTool,
    Event,
    ManagedOrigin,
    Recorded,
    SandboxSpec,
    SessionArchived,
    SessionCreated,
    SessionUpdated,
    event_type,
)
from session_store import Resource, SessionInfo, SessionReader

router = APIRouter(prefix=MANAGED_PREFIX, route_class=QueryFirst, tags=["managed agents"])

_STATUSES: Final = {
    "running": ("running", "waiting"),
    "idle": ("idle", "waiting", "paused", "completed"),
    "terminated": ("failed", "cancelled"),
    "rescheduling": (),
}


async def agent_snapshot(info: SessionInfo, services: GatewayServices) -> dict[str, Any]:
    """The agent version a session was made from, as `Session.agent` shows it."""
    assert info.agent_id is not None, "a Managed Agents session is made from an agent"
    stored = await services.store.get_resource(
        info.tenant, AGENT, info.agent_id, info.agent_version
    )
    return await session_agent(agent_view(stored), info.tenant, services)


def snapshot_of(agent: dict[str, Any]) -> dict[str, Any]:
    return {**{k: agent[k] for k in _SNAPSHOT if k in agent}, "type": "agent"}


async def session_agent(
    agent: dict[str, Any], tenant: str, services: GatewayServices
) -> dict[str, Any]:
    """`Session.agent`: the agent's snapshot, whose `multiagent` names each agent its
    threads may run by its full definition (a `SessionThreadAgent`), not by reference."""
    snapshot = snapshot_of(agent)
    multiagent = snapshot.get("multiagent")
    if multiagent is None:
        return snapshot

    async def defined(references: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {**snapshot_of(agent_view(stored)), "multiagent": None}
            for stored in [
                await services.store.get_resource(tenant, AGENT, r["id"], r["version"])
                for r in references
            ]
        ]

    if multiagent["type"] == "coordinator":
        multiagent = {**multiagent, "agents": await defined(multiagent["agents"])}
    elif multiagent["subagents"]["type"] == "enabled":
        subagents = multiagent["subagents"]
        named = await defined(subagents["predefined_agents"])
        multiagent = {**multiagent, "subagents": {**subagents, "predefined_agents": named}}
    return {**snapshot, "multiagent": multiagent}


# What a session's view reads of its log: the spec (its budget) and the outcomes.
_VIEWED: Final = frozenset(
    {
        "session.created",
        "outcome.defined",
        "outcome.evaluation_started",
        "outcome.evaluated",
        "thread.replied",
    }
)


async def log_view(store: SessionReader, session_id: str) -> Projection:
    """The projection of what a session's view shows of its log (the rest is not read)."""
    projection = Projection()
    for record in await store.read(session_id, types=_VIEWED):
        projection.project(record)
    return projection


def projected(events: list[Event], at: float) -> Projection:
    """The projection of a new session's first events, before they are read back."""
    projection = Projection()
    for seq, event in enumerate(events, start=1):
        projection.project(Recorded(seq=seq, at=at, type=event_type(event), event=event))
    return projection


def session_view(info: SessionInfo, agent: dict[str, Any], log: Projection) -> dict[str, Any]:
    elapsed = info.updated_at - info.created_at
    status = managed_status(info.status, info.status_reason)
    # The session's spend counts its threads' (as its budgets do); each thread's own is
    # the thread's `usage`.
    threads_usage, threads_cost = log.threads.spend()
    return {
        "id": info.session_id,
        "type": "session",
        "status": status,
        "agent": agent,
        "environment_id": info.environment_id or "",
        "title": info.title or None,
        "metadata": info.metadata,
        "resources": [],
        "vault_ids": [],
        "outcome_evaluations": log.outcomes.resources(working=status == "running"),
        "budget": budget_view(log.spec),
        "stats": {"active_seconds": elapsed, "duration_seconds": elapsed},
        "usage": usage_view(info.usage + threads_usage, info.cost_usd + threads_cost),
        "created_at": rfc3339(info.created_at),
        "updated_at": rfc3339(info.updated_at),
        "archived_at": None if info.archived_at is None else rfc3339(info.archived_at),
        "deployment_id": None,
    }


async def viewed(info: SessionInfo, services: GatewayServices) -> Response:
    agent = await agent_snapshot(info, services)
    return answer(session_view(info, agent, await log_view(services.store, info.session_id)))


_SNAPSHOT: Final = (
    "id",
    "name",
    "description",
    "system",
    "model",
    "tools",
    "skills",
    "mcp_servers",
    "multiagent",
    "execution_identity",
    "version",
)


@router.post("/v1/sessions", response_class=Response)
async def create_session(
    keys: Keys, tenant: Tenant, request: Request, services: Services
) -> Response:
    """Make a session of an agent (its latest version, or a pinned one) in an environment;
    `initial_events` start it at once."""
    params = await decode_body(request, SessionParams)
    if isinstance(params.agent, AgentWithOverrides):
        raise refuse("agent", "agent_with_overrides is not served yet; make an agent version")
    if params.resources:
        raise refuse("resources", "keel does not mount files or repositories into sessions yet")
    if params.vault_ids:
        raise refuse("vault_ids", "keel has no vaults yet")
    agent_id, version = (
        (params.agent, None)
        if isinstance(params.agent, str)
        else (params.agent.id, params.agent.version)
    )
    agent = await services.store.get_resource(tenant, AGENT, agent_id, version)
    if agent.archived_at is not None:
        raise ApiProblem(400, f"agent {agent_id} is archived")
    environment = await services.store.get_resource(tenant, ENVIRONMENT, params.environment_id)
    if environment.archived_at is not None:
        raise ApiProblem(400, f"environment {params.environment_id} is archived")
    agent_body = decode_stored(agent.body)
    environment_body = decode_stored(environment.body)
    spec = agent_spec(agent_body, environment_body, params.budget)
    shown = agent_view(agent)

    async def load(agent_id: str, version: int) -> Resource:
        return await services.store.get_resource(tenant, AGENT, agent_id, version)

    subagents = await roster(
        shown["multiagent"], load, lambda body: agent_spec(body, environment_body, None)
    )
    spec = msgspec.structs.replace(spec, subagents=subagents)
    snapshot = await session_agent(shown, tenant, services)
    first: list[Event] = []
    open_outcome = None
    for i, event in enumerate(params.initial_events):
        if isinstance(event, UserDefineOutcomeParams):
            defined = outcome_defined(event, f"initial_events[{i}]", open_outcome)
            first.append(defined)
            open_outcome = defined.outcome_id
        else:
            first.append(user_message(event))
    created = SessionCreated(
        spec=spec,
        title=params.title or "",
        metadata=params.metadata,
        managed=ManagedOrigin(
            agent_id=agent.resource_id,
            agent_version=agent.version,
            environment_id=environment.resource_id,
        ),
    )

    def respond(info: SessionInfo) -> Response:
        return answer(session_view(info, snapshot, projected([created, *first], info.created_at)))

    info = await services.store.create_session(
        tenant, created, first_input=first, keyed=keys.keyed(respond)
    )
    keys.wrote()
    if first:
        await services.announcer.announce(info.session_id, "initial events", info.head_seq)
    return respond(info)


def agent_spec(
    agent: dict[str, Any], environment: dict[str, Any], budget: BudgetParams | None
) -> AgentSpec:
    """The spec a session of this agent version runs, in this environment."""
    tools: list[str] = []
    permissions: dict[str, Any] = {}
    custom: list[CustomTool] = []
    for tool in agent.get("tools", []):
        if tool["type"] == TOOLSET:
            for config in tool["configs"]:
                if config["enabled"]:
                    tools.append(config["name"])
                    ask = config["permission_policy"]["type"] == "always_ask"
                    permissions[config["name"]] = "ask" if ask else "allow"
        elif tool["type"] == "custom":
            custom.append(
                CustomTool(
                    name=tool["name"],
                    description=tool["description"],
                    input_schema=tool["input_schema"],
                )
            )
    self_hosted = environment["config"]["type"] == "self_hosted"
    resets = agent.get("keel_context_resets")
    max_cost = None
    if budget is not None:
        max_cost = float(Decimal(budget.max_list_cost.amount) / 100)
    return AgentSpec(
        model=model_spec(agent["model"]["id"]),
        system_prompt=agent.get("system") or "",
        tools=tools,
        permissions=permissions,
        custom_tools=custom,
        budgets=Budgets(max_cost_usd=max_cost),
        sandbox=SandboxSpec(backend="self_hosted") if self_hosted else SandboxSpec(),
        turn_end="idle",
        context_resets=None if resets is None else msgspec.convert(resets, ContextResets),
    )


@router.get("/v1/sessions/{session_id}", response_class=Response)
async def retrieve_session(session: ManagedWorkerSession, services: Services) -> Response:
    return await viewed(session, services)


@router.get("/v1/sessions", response_class=Response)
async def list_sessions(
    tenant: Tenant,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    page_: Annotated[str | None, Query(alias="page", max_length=64)] = None,
    order: Literal["asc", "desc"] = "desc",
    statuses: Annotated[
        list[Literal["running", "idle", "terminated", "rescheduling"]] | None,
        Query(alias="statuses[]"),
    ] = None,
    include_archived: bool = False,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    agent_version: Annotated[int | None, Query(ge=1, le=2**53)] = None,
    created_gt: Annotated[str | None, time_query("created_at[gt]")] = None,
    created_gte: Annotated[str | None, time_query("created_at[gte]")] = None,
    created_lt: Annotated[str | None, time_query("created_at[lt]")] = None,
    created_lte: Annotated[str | None, time_query("created_at[lte]")] = None,
) -> Response:
    """The tenant's sessions, newest first (or `order=asc`), with the SDK's filters."""
    bounds = {"gt": created_gt, "gte": created_gte, "lt": created_lt, "lte": created_lte}
    after, before = time_filter(*(instant(t, f"created_at[{k}]") for k, t in bounds.items()))
    found = await services.store.list_sessions(
        tenant,
        statuses=[keel for status in statuses or () for keel in _STATUSES[status]],
        created_after=after,
        created_before=before,
        agent_id=agent_id,
        agent_version=agent_version,
        made_from_agents=True,
        include_archived=include_archived,
        oldest_first=order == "asc",
        limit=limit,
        cursor=page_,
    )
    snapshots: dict[tuple[str | None, int | None], dict[str, Any]] = {}
    items = []
    for info in found.items:
        pinned = (info.agent_id, info.agent_version)
        if pinned not in snapshots:
            snapshots[pinned] = await agent_snapshot(info, services)
        log = await log_view(services.store, info.session_id)
        items.append(session_view(info, snapshots[pinned], log))
    if statuses:
        # `waiting` is running or idle by its reason: keep what the filter asked for.
        items = [item for item in items if item["status"] in statuses]
    return answer({"data": items, "next_page": found.next_cursor, "prev_page": None})


@router.post("/v1/sessions/{session_id}", response_class=Response)
async def update_session(
    keys: Keys, session: ManagedSession, request: Request, services: Services
) -> Response:
    """Change the title or metadata (a patch: null removes a key); recorded in the log."""
    params = await decode_body(request, SessionUpdateParams)
    if params.budget is not None:
        raise refuse("budget", "a session's budget is set when it is made")
    if params.agent is not None:
        raise refuse("agent", "changing a live session's tools is not served yet")
    if params.vault_ids:
        raise refuse("vault_ids", "keel has no vaults yet")
    metadata = None if params.metadata is None else patched(session.metadata, params.metadata)
    agent = await agent_snapshot(session, services)
    log = await log_view(services.store, session.session_id)
    info = await services.store.amend_session(
        session.session_id,
        SessionUpdated(title=params.title, metadata=metadata),
        keyed=keys.keyed(lambda info: answer(session_view(info, agent, log))),
    )
    keys.wrote()
    return answer(session_view(info, agent, log))


@router.post("/v1/sessions/{session_id}/archive", response_class=Response)
async def archive_session(keys: Keys, session: ManagedSession, services: Services) -> Response:
    """Put it away: listed only with `include_archived`, and it takes no more input."""
    if session.status == "running":
        raise ApiProblem(409, "the session is running; interrupt it first")
    agent = await agent_snapshot(session, services)
    log = await log_view(services.store, session.session_id)
    info = await services.store.amend_session(
        session.session_id,
        SessionArchived(),
        keyed=keys.keyed(lambda info: answer(session_view(info, agent, log))),
    )
    keys.wrote()
    return answer(session_view(info, agent, log))


@router.delete("/v1/sessions/{session_id}", response_class=Response)
async def delete_session(keys: Keys, session: ManagedSession, services: Services) -> Response:
    """Delete a session that is not running, and its log, for good."""
    gone = Deleted(id=session.session_id, type="session_deleted")
    await services.store.delete_session(
        session.session_id, unless_running=True, keyed=keys.keyed(lambda _: answer(gone))
    )
    keys.wrote()
    return answer(gone)
