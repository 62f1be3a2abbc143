"""The Managed Agents routes in the served OpenAPI document.

A request body is documented as keel decodes it (its `_shapes` Struct, whose JSON Schema
msgspec makes); an answer in the shape the official SDK reads it, the JSON Schema of the
SDK's own pydantic model. So Schemathesis, checking every answer against the document,
checks that what keel sends is what the SDK builds its objects from.

The SDK's models are imported only when the document is first asked for: they take a second
to import, which a gateway that never serves its document need not pay.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Final

import msgspec
from fastapi import FastAPI
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway.managed._models import served_models_pattern
from gateway.managed._shapes import (
    NETWORK_TOOLS,
    REFUSED,
    TOOLSET_TOOLS,
    AgentCreateParams,
    AgentParams,
    EnvironmentCreateParams,
    EnvironmentKey,
    EnvironmentKeyParams,
    EnvironmentParams,
    SendEvents,
    SessionParams,
    SessionUpdateParams,
)

_REF: Final = "#/components/schemas/{model}"
_SDK_TYPES: Final = "anthropic.types.beta"
# An answer: the SDK model it is (its module under `anthropic.types.beta` and its name), and
# whether the route answers a page of them; or keel's own Struct, for keel's extensions.
Answer = tuple[str, str, bool] | type
_AGENT: Final = ("beta_managed_agents_agent", "BetaManagedAgentsAgent")
_ENVIRONMENT: Final = ("beta_environment", "BetaEnvironment")
_SESSION: Final = ("beta_managed_agents_session", "BetaManagedAgentsSession")
_EVENT: Final = ("sessions.beta_managed_agents_session_event", "BetaManagedAgentsSessionEvent")
_THREAD: Final = ("sessions.beta_managed_agents_session_thread", "BetaManagedAgentsSessionThread")

# Every Managed Agents operation the app serves: its body (None: none) and its answer.
OPERATIONS: Final[dict[tuple[str, str], tuple[type | None, Answer]]] = {
    ("POST", "/v1/agents"): (AgentCreateParams, (*_AGENT, False)),
    ("GET", "/v1/agents"): (None, (*_AGENT, True)),
    ("GET", "/v1/agents/{agent_id}"): (None, (*_AGENT, False)),
    ("POST", "/v1/agents/{agent_id}"): (AgentParams, (*_AGENT, False)),
    ("POST", "/v1/agents/{agent_id}/archive"): (None, (*_AGENT, False)),
    ("GET", "/v1/agents/{agent_id}/versions"): (None, (*_AGENT, True)),
    ("POST", "/v1/environments"): (EnvironmentCreateParams, (*_ENVIRONMENT, False)),
    ("GET", "/v1/environments"): (None, (*_ENVIRONMENT, True)),
    ("GET", "/v1/environments/{environment_id}"): (None, (*_ENVIRONMENT, False)),
    ("POST", "/v1/environments/{environment_id}"): (EnvironmentParams, (*_ENVIRONMENT, False)),
    ("POST", "/v1/environments/{environment_id}/archive"): (None, (*_ENVIRONMENT, False)),
    ("DELETE", "/v1/environments/{environment_id}"): (
        None,
        ("beta_environment_delete_response", "BetaEnvironmentDeleteResponse", False),
    ),
    ("POST", "/v1/environments/{environment_id}/keys"): (EnvironmentKeyParams, EnvironmentKey),
    ("POST", "/managed-agents/v1/sessions"): (SessionParams, (*_SESSION, False)),
    ("GET", "/managed-agents/v1/sessions"): (None, (*_SESSION, True)),
    ("GET", "/managed-agents/v1/sessions/{session_id}"): (None, (*_SESSION, False)),
    ("POST", "/managed-agents/v1/sessions/{session_id}"): (
        SessionUpdateParams,
        (*_SESSION, False),
    ),
    ("POST", "/managed-agents/v1/sessions/{session_id}/archive"): (None, (*_SESSION, False)),
    ("DELETE", "/managed-agents/v1/sessions/{session_id}"): (
        None,
        ("beta_managed_agents_deleted_session", "BetaManagedAgentsDeletedSession", False),
    ),
    ("POST", "/managed-agents/v1/sessions/{session_id}/events"): (
        SendEvents,
        (
            "sessions.beta_managed_agents_send_session_events",
            "BetaManagedAgentsSendSessionEvents",
            False,
        ),
    ),
    ("GET", "/managed-agents/v1/sessions/{session_id}/events"): (None, (*_EVENT, True)),
    ("GET", "/managed-agents/v1/sessions/{session_id}/threads"): (None, (*_THREAD, True)),
    ("GET", "/managed-agents/v1/sessions/{session_id}/threads/{thread_id}"): (
        None,
        (*_THREAD, False),
    ),
    ("POST", "/managed-agents/v1/sessions/{session_id}/threads/{thread_id}/archive"): (
        None,
        (*_THREAD, False),
    ),
    ("GET", "/managed-agents/v1/sessions/{session_id}/threads/{thread_id}/events"): (
        None,
        (*_EVENT, True),
    ),
}
STREAM: Final = ("GET", "/managed-agents/v1/sessions/{session_id}/events/stream")
THREAD_STREAM: Final = (
    "GET",
    "/managed-agents/v1/sessions/{session_id}/threads/{thread_id}/stream",
)
_STREAMS: Final = {STREAM, THREAD_STREAM}
_ERRORS: Final = {
    "400": "the request asks for what keel does not serve, or is not valid for it",
    "401": "no or an unknown API key",
    "404": "no such resource (or another tenant's)",
    "409": "a conflict: a stale `version`, a resource in use, a session that takes no input",
    "413": "the body is over 1 MB",
    "422": "the body is not valid JSON, or not of the request's shape",
    "503": "the session store is unavailable; try again",
}


def document_managed_agents(app: FastAPI) -> None:
    """Adds the Managed Agents bodies and answers to the app's document, once, when it is
    first made."""
    native: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        document = native()
        if "x-managed-agents" not in document:
            _add(document)
            document["x-managed-agents"] = "managed-agents-2026-04-01"
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _add(document: dict[str, Any]) -> None:
    components: dict[str, Any] = document["components"]["schemas"]
    bodies = [kind for kind, _ in OPERATIONS.values() if kind is not None]
    keels = [kind for _, kind in OPERATIONS.values() if isinstance(kind, type)]
    _, requests = msgspec.json.schema_components(
        [*bodies, *keels], ref_template=_REF.replace("model", "name")
    )
    _document_what_is_served(requests)
    answers = {kind[:2] for _, kind in OPERATIONS.values() if isinstance(kind, tuple)}
    for schemas in (requests, _sdk_schemas(answers)):
        clashes = set(schemas) & set(components)
        assert not clashes or all(components[n] == schemas[n] for n in clashes), clashes
        components.update(schemas)
    served = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if _is_managed(path)
    }
    assert served == set(OPERATIONS) | _STREAMS, served ^ (set(OPERATIONS) | _STREAMS)
    for (method, path), (body, kind) in OPERATIONS.items():
        _, name, paged = kind if isinstance(kind, tuple) else ("", kind.__name__, False)
        operation = document["paths"][path][method.lower()]
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(body.__name__)}},
            }
        operation["responses"] = {"200": _json("OK", _page(name) if paged else _ref(name))}
        operation["responses"] |= _errors()
    for _, path in _STREAMS:
        document["paths"][path]["get"]["responses"] = {
            "200": {
                "description": (
                    "Server-Sent Events: `event: <type>`, `id: <event id>`, `data: <event>`"
                ),
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_errors(),
        }


def _document_what_is_served(requests: dict[str, Any]) -> None:
    """Where a request's JSON Schema alone would let through what keel refuses by name (a
    400 saying what is not served), the document says what is served instead."""
    refused = {_REF.format(model=kind.__name__) for kind in REFUSED}
    for kind in REFUSED:
        requests.pop(kind.__name__, None)
    for schema in requests.values():
        _drop_refs(schema, refused)
    models = served_models_pattern()
    requests["ModelConfig"]["properties"]["id"]["pattern"] = models
    for name in ("AgentParams", "AgentCreateParams"):
        model = requests[name]["properties"]["model"]
        for member in model.get("anyOf", [model]):
            if member.get("type") == "string":
                member["pattern"] = models
    # Refused by name: the `auto` policy, and a network.
    requests["PermissionPolicy"]["properties"]["type"]["enum"] = ["always_allow", "always_ask"]
    requests["Networking"]["properties"]["type"]["enum"] = ["limited"]
    tool = requests["ToolConfig"]
    tool["properties"]["name"]["enum"] = [*TOOLSET_TOOLS, *NETWORK_TOOLS]
    # keel's sandboxes have no network: a web tool may be named, never enabled.
    tool["if"] = {"properties": {"name": {"enum": list(NETWORK_TOOLS)}}}
    tool["then"] = {"properties": {"enabled": {"enum": [False, None]}}}
    # keel runs no advisor and no workflows: only disabled ones are taken.
    for name in ("AdvisorParams", "WorkflowsParams"):
        requests[name]["properties"]["type"]["enum"] = ["disabled"]
    # With inline agents disabled, predefined ones are needed.
    inline_disabled = {"properties": {"type": {"enum": ["disabled"]}}, "required": ["type"]}
    requests["SubagentsParams"]["if"] = {
        "properties": {"inline_agents": inline_disabled},
        "required": ["inline_agents"],
    }
    requests["SubagentsParams"]["then"] = {
        "required": ["predefined_agents"],
        "properties": {"predefined_agents": {"type": "array", "minItems": 1}},
    }
    # A self-hosted environment is the user's machine: keel sets up neither.
    requests["EnvironmentConfig"]["if"] = {"properties": {"type": {"enum": ["self_hosted"]}}}
    requests["EnvironmentConfig"]["then"] = {
        "properties": {"networking": {"type": "null"}, "packages": {"type": "null"}}
    }


def _drop_refs(schema: Any, refused: set[str]) -> None:
    """Leaves the refused shapes out of every union in `schema`."""
    if isinstance(schema, list):
        for item in schema:
            _drop_refs(item, refused)
        return
    if not isinstance(schema, dict):
        return
    for key in ("anyOf", "oneOf"):
        if key in schema:
            schema[key] = [m for m in schema[key] if m.get("$ref") not in refused]
    mapping = schema.get("discriminator", {}).get("mapping")
    if mapping is not None:
        for tag in [tag for tag, ref in mapping.items() if ref in refused]:
            del mapping[tag]
    for value in schema.values():
        _drop_refs(value, refused)


def _is_managed(path: str) -> bool:
    return path.startswith(("/managed-agents/", "/v1/agents", "/v1/environments"))


def _sdk_schemas(answers: set[tuple[str, str]]) -> dict[str, Any]:
    """The JSON Schemas of the SDK's models, each under its own name."""
    schemas: dict[str, Any] = {}
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for module, name in sorted(answers):
        kind = getattr(importlib.import_module(f"{_SDK_TYPES}.{module}"), name)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            models.append((kind, "validation"))
            continue
        # A union (the events): its schema, and the schemas it refers to.
        schema = TypeAdapter(kind).json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    _, definitions = models_json_schema(models, ref_template=_REF)
    schemas.update(definitions.get("$defs", {}))
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _page(name: str) -> dict[str, Any]:
    """A cursor page as the SDK reads it: it asks again with `page=next_page` until null."""
    return {
        "type": "object",
        "required": ["data", "next_page"],
        "properties": {
            "data": {"type": "array", "items": _ref(name)},
            "next_page": {"type": ["string", "null"]},
            "prev_page": {"type": ["string", "null"]},
        },
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors() -> dict[str, Any]:
    return {code: _json(what, _ref("ApiError")) for code, what in _ERRORS.items()}
