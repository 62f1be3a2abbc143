"""An agent's `multiagent` configuration: the threads its sessions may spawn.

Taken: `multiagent_20261001` with `subagents` (predefined agents by id, id and version, or
`{type: "self"}`; inline agents enabled or not), and the `coordinator` form (a roster of
agents). Refused by name: an enabled `advisor`, enabled `workflows` and a roster's advisor
entry (keel runs neither). Omitted members resolve as the SDK documents them, except
`workflows`, which resolves as disabled: keel does not run workflows, and says so.

Stored resolved, with `self` kept as `{type: "self"}` (an agent's id is not known before it
is made) and shown as the agent itself at the version shown. A session made of the agent
runs a roster (`schemas.Subagents`) of the agents named, each as its own session's spec;
`Session.agent.multiagent` shows each as the full agent definition it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, Literal

import msgspec

from gateway._errors import ApiProblem
from gateway.managed._common import decode_stored, refuse
from schemas import AgentSpec, NamedAgent, Subagents
from session_store import Resource, ResourceNotFound, Resources

AGENT: Final = "agent"
MAX_PREDEFINED: Final = 20
_SELF: Final = {"type": "self"}
_DISABLED: Final = {"type": "disabled"}
# Each agent at most once (the same agent twice is refused).
_UNIQUE: Final = {"uniqueItems": True}


class _Param(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class AgentEntry(_Param, tag="agent", tag_field="type", frozen=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    version: Annotated[int, msgspec.Meta(ge=1, le=2**53)] | None = None


class SelfEntry(_Param, tag="self", tag_field="type", frozen=True):
    """The agent that owns the configuration."""


class AdvisorEntry(_Param, tag="advisor", tag_field="type", frozen=True):
    """Decoded only to be refused by name."""

    model: Any = None


AgentId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Predefined = AgentId | AgentEntry | SelfEntry


class Toggle(_Param, frozen=True):
    type: Literal["enabled", "disabled"]


class SubagentsParams(_Param, frozen=True):
    type: Literal["enabled", "disabled"]
    inline_agents: Toggle | None = None
    predefined_agents: (
        Annotated[list[Predefined], msgspec.Meta(max_length=MAX_PREDEFINED)] | None
    ) = None


class AdvisorParams(_Param, frozen=True):
    type: Literal["enabled", "disabled"]
    model: Any = None


class WorkflowsParams(_Param, frozen=True):
    type: Literal["enabled", "disabled"]
    inline_agents: Toggle | None = None
    predefined_agents: list[Any] | None = None


class Multiagent20261001(_Param, tag="multiagent_20261001", tag_field="type", frozen=True):
    advisor: AdvisorParams | None = None
    subagents: SubagentsParams | None = None
    workflows: WorkflowsParams | None = None


class Coordinator(_Param, tag="coordinator", tag_field="type", frozen=True):
    agents: Annotated[
        list[AgentId | AgentEntry | SelfEntry | AdvisorEntry],
        msgspec.Meta(min_length=1, max_length=MAX_PREDEFINED, extra_json_schema=_UNIQUE),
    ]


MultiagentParams = Multiagent20261001 | Coordinator


async def resolve(
    params: MultiagentParams, tenant: str, store: Resources, where: str = "multiagent"
) -> dict[str, Any]:
    """The stored form of `params`: every default resolved, every agent named checked
    (it exists, is not archived, and has no `multiagent` of its own: depth 1)."""
    if isinstance(params, Coordinator):
        entries: list[Predefined] = []
        for i, entry in enumerate(params.agents):
            if isinstance(entry, AdvisorEntry):
                raise refuse(f"{where}.agents[{i}]", "keel has no advisor yet")
            entries.append(entry)
        agents = await _references(entries, tenant, store, f"{where}.agents")
        return {"type": "coordinator", "agents": agents}
    if params.advisor is not None and params.advisor.type == "enabled":
        raise refuse(f"{where}.advisor", "keel has no advisor yet")
    if params.workflows is not None and params.workflows.type == "enabled":
        raise refuse(f"{where}.workflows", "keel does not run workflows yet")
    subagents = params.subagents
    if subagents is not None and subagents.type == "disabled":
        resolved_subagents: dict[str, Any] = dict(_DISABLED)
    else:
        inline = (
            subagents is None
            or subagents.inline_agents is None
            or (subagents.inline_agents.type == "enabled")
        )
        named = (subagents.predefined_agents if subagents is not None else None) or []
        if not inline and not named:
            raise ApiProblem(
                400,
                f"{where}.subagents: with inline_agents disabled, predefined_agents must name "
                "at least one agent",
            )
        resolved_subagents = {
            "type": "enabled",
            "inline_agents": {"type": "enabled" if inline else "disabled"},
            "predefined_agents": await _references(
                named, tenant, store, f"{where}.subagents.predefined_agents"
            ),
        }
    return {
        "type": "multiagent_20261001",
        "advisor": dict(_DISABLED),
        "subagents": resolved_subagents,
        "workflows": dict(_DISABLED),
    }


async def _references(
    entries: list[Predefined], tenant: str, store: Resources, where: str
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, SelfEntry):
            reference: dict[str, Any] = dict(_SELF)
        else:
            agent_id, version = (
                (entry, None) if isinstance(entry, str) else (entry.id, entry.version)
            )
            try:
                agent = await store.get_resource(tenant, AGENT, agent_id, version)
            except ResourceNotFound:
                raise ApiProblem(404, f"{where}[{i}]: no agent {agent_id!r}") from None
            # What the agent named is now, not the request, is in the way: a conflict.
            if agent.archived_at is not None:
                raise ApiProblem(409, f"{where}[{i}]: agent {agent_id} is archived")
            if decode_stored(agent.body).get("multiagent") is not None:
                raise ApiProblem(
                    409, f"{where}[{i}]: agent {agent_id} has multiagent set itself (depth 1)"
                )
            reference = {"type": "agent", "id": agent.resource_id, "version": agent.version}
        if reference in out:
            raise ApiProblem(400, f"{where}[{i}]: the same agent twice")
        out.append(reference)
    return out


def shown(multiagent: dict[str, Any] | None, agent_id: str, version: int) -> dict[str, Any] | None:
    """The stored form as the agent shows it: `self` is the agent at this version."""
    if multiagent is None:
        return None
    own = {"type": "agent", "id": agent_id, "version": version}

    def references(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [own if entry == _SELF else entry for entry in entries]

    if multiagent["type"] == "coordinator":
        return {**multiagent, "agents": references(multiagent["agents"])}
    subagents = multiagent["subagents"]
    if subagents["type"] == "enabled":
        subagents = {**subagents, "predefined_agents": references(subagents["predefined_agents"])}
    return {**multiagent, "subagents": subagents}


def roster_references(multiagent: dict[str, Any] | None) -> tuple[list[dict[str, Any]], bool]:
    """The agents (as shown: `self` resolved) a session's threads may run, and whether
    inline agents are allowed."""
    if multiagent is None:
        return [], False
    if multiagent["type"] == "coordinator":
        return list(multiagent["agents"]), False
    subagents = multiagent["subagents"]
    if subagents["type"] != "enabled":
        return [], False
    return list(subagents["predefined_agents"]), subagents["inline_agents"]["type"] == "enabled"


async def roster(
    multiagent: dict[str, Any] | None,
    load: Callable[[str, int], Awaitable[Resource]],
    spec_of: Callable[[dict[str, Any]], AgentSpec],
) -> Subagents | None:
    """The roster a session of the agent runs: each agent named, as the spec its thread
    runs (named by its agent's name, made unique)."""
    references, inline = roster_references(multiagent)
    if not references and not inline:
        return None
    named: list[NamedAgent] = []
    taken: set[str] = set()
    for reference in references:
        agent = await load(reference["id"], reference["version"])
        body = decode_stored(agent.body)
        name = _unique(_tool_name(body["name"]), taken)
        named.append(
            NamedAgent(
                name=name,
                description=body.get("description") or "",
                spec=spec_of(body),
                agent_id=agent.resource_id,
                agent_version=agent.version,
            )
        )
    return Subagents(roster=named, inline=inline)


def _tool_name(name: str) -> str:
    """An agent's name as the model names it in a spawn call."""
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)[:56]
    return cleaned or "agent"


def _unique(name: str, taken: set[str]) -> str:
    candidate = name
    for n in range(2, MAX_PREDEFINED + 2):
        if candidate not in taken:
            break
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate
