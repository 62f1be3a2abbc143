"""The Managed Agents routes in the served OpenAPI document.

A request body is documented as keel decodes it (its Struct, whose JSON Schema
msgspec makes); an answer in the shape the official SDK reads it, the JSON Schema of the
SDK's own pydantic model. So Schemathesis, checking every answer against the document,
checks that what keel sends is what the SDK builds its objects from. Each operation's
security names the key it takes: an API key, a self-hosted environment's worker key, or
either.

The SDK's models are imported only when the document is first asked for: they take a second
to import, which a gateway that never serves its document need not pay.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec
from fastapi import FastAPI
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway._webhook_urls import WELL_FORMED
from gateway.managed._models import served_models_pattern
from gateway.managed._shapes import (
    NETWORK_TOOLS,
    REFUSED,
    TOOLSET_TOOLS,
    AgentCreateParams,
    AgentParams,
    Deleted,
    EnvironmentCreateParams,
    EnvironmentKey,
    EnvironmentKeyParams,
    EnvironmentParams,
    SendEvents,
    SessionParams,
    SessionUpdateParams,
    WorkStopParams,
    WorkUpdateParams,
)
from gateway.managed._webhook_events import WEBHOOK_TYPES
from gateway.managed._webhooks import WebhookEndpointParams, WebhookEndpointView

_REF: Final = "#/components/schemas/{model}"
_SDK_TYPES: Final = "anthropic.types.beta"
# How many of it a route answers: one, a page of them, or one or JSON `null`.
Form = Literal["one", "page", "one_or_null"]
# An answer: the SDK model it is (its module under `anthropic.types.beta` and its name), and
# its form; or keel's own Struct, for keel's extensions.
Answer = tuple[str, str, Form] | type
_AGENT: Final = ("beta_managed_agents_agent", "BetaManagedAgentsAgent")
_ENVIRONMENT: Final = ("beta_environment", "BetaEnvironment")
_SESSION: Final = ("beta_managed_agents_session", "BetaManagedAgentsSession")
_EVENT: Final = ("sessions.beta_managed_agents_session_event", "BetaManagedAgentsSessionEvent")
_WORK: Final = ("environments.beta_self_hosted_work", "BetaSelfHostedWork")
_HEARTBEAT_MISMATCH: Final = (
    "environments.beta_heartbeat_precondition_failed_error_details",
    "BetaHeartbeatPreconditionFailedErrorDetails",
)
_QUEUE: Final = "/v1/environments/{environment_id}/work"
_ITEM: Final = f"{_QUEUE}/{{work_id}}"
_WEBHOOK_ENDPOINT: Final = "/v1/webhook_endpoint"
_THREAD: Final = ("sessions.beta_managed_agents_session_thread", "BetaManagedAgentsSessionThread")

# Every Managed Agents operation the app serves: its body (None: none) and its answer.
OPERATIONS: Final[dict[tuple[str, str], tuple[type | None, Answer]]] = {
    ("POST", "/v1/agents"): (AgentCreateParams, (*_AGENT, "one")),
    ("GET", "/v1/agents"): (None, (*_AGENT, "page")),
    ("GET", "/v1/agents/{agent_id}"): (None, (*_AGENT, "one")),
    ("POST", "/v1/agents/{agent_id}"): (AgentParams, (*_AGENT, "one")),
    ("POST", "/v1/agents/{agent_id}/archive"): (None, (*_AGENT, "one")),
    ("GET", "/v1/agents/{agent_id}/versions"): (None, (*_AGENT, "page")),
    ("POST", "/v1/environments"): (EnvironmentCreateParams, (*_ENVIRONMENT, "one")),
    ("GET", "/v1/environments"): (None, (*_ENVIRONMENT, "page")),
    ("GET", "/v1/environments/{environment_id}"): (None, (*_ENVIRONMENT, "one")),
    ("POST", "/v1/environments/{environment_id}"): (EnvironmentParams, (*_ENVIRONMENT, "one")),
    ("POST", "/v1/environments/{environment_id}/archive"): (None, (*_ENVIRONMENT, "one")),
    ("DELETE", "/v1/environments/{environment_id}"): (
        None,
        ("beta_environment_delete_response", "BetaEnvironmentDeleteResponse", "one"),
    ),
    ("POST", "/v1/environments/{environment_id}/keys"): (EnvironmentKeyParams, EnvironmentKey),
    ("GET", f"{_QUEUE}/poll"): (None, (*_WORK, "one_or_null")),
    ("GET", f"{_QUEUE}/stats"): (
        None,
        ("environments.beta_self_hosted_work_queue_stats", "BetaSelfHostedWorkQueueStats", "one"),
    ),
    ("GET", _QUEUE): (None, (*_WORK, "page")),
    ("GET", _ITEM): (None, (*_WORK, "one")),
    ("POST", _ITEM): (WorkUpdateParams, (*_WORK, "one")),
    ("POST", f"{_ITEM}/ack"): (None, (*_WORK, "one")),
    ("POST", f"{_ITEM}/heartbeat"): (
        None,
        (
            "environments.beta_self_hosted_work_heartbeat_response",
            "BetaSelfHostedWorkHeartbeatResponse",
            "one",
        ),
    ),
    ("POST", f"{_ITEM}/stop"): (WorkStopParams, (*_WORK, "one")),
    ("POST", "/managed-agents/v1/sessions"): (SessionParams, (*_SESSION, "one")),
    ("GET", "/managed-agents/v1/sessions"): (None, (*_SESSION, "page")),
    ("GET", "/managed-agents/v1/sessions/{session_id}"): (None, (*_SESSION, "one")),
    ("POST", "/managed-agents/v1/sessions/{session_id}"): (
        SessionUpdateParams,
        (*_SESSION, "one"),
    ),
    ("POST", "/managed-agents/v1/sessions/{session_id}/archive"): (None, (*_SESSION, "one")),
    ("DELETE", "/managed-agents/v1/sessions/{session_id}"): (
        None,
        ("beta_managed_agents_deleted_session", "BetaManagedAgentsDeletedSession", "one"),
    ),
    ("POST", "/managed-agents/v1/sessions/{session_id}/events"): (
        SendEvents,
        (
            "sessions.beta_managed_agents_send_session_events",
            "BetaManagedAgentsSendSessionEvents",
            "one",
        ),
    ),
    ("GET", "/managed-agents/v1/sessions/{session_id}/events"): (None, (*_EVENT, "page")),
    ("PUT", _WEBHOOK_ENDPOINT): (WebhookEndpointParams, WebhookEndpointView),
    ("GET", _WEBHOOK_ENDPOINT): (None, WebhookEndpointView),
    ("DELETE", _WEBHOOK_ENDPOINT): (None, Deleted),
    ("GET", "/managed-agents/v1/sessions/{session_id}/threads"): (None, (*_THREAD, "page")),
    ("GET", "/managed-agents/v1/sessions/{session_id}/threads/{thread_id}"): (
        None,
        (*_THREAD, "one"),
    ),
    ("POST", "/managed-agents/v1/sessions/{session_id}/threads/{thread_id}/archive"): (
        None,
        (*_THREAD, "one"),
    ),
    ("GET", "/managed-agents/v1/sessions/{session_id}/threads/{thread_id}/events"): (
        None,
        (*_EVENT, "page"),
    ),
}
STREAM: Final = ("GET", "/managed-agents/v1/sessions/{session_id}/events/stream")
THREAD_STREAM: Final = (
    "GET",
    "/managed-agents/v1/sessions/{session_id}/threads/{thread_id}/stream",
)
_STREAMS: Final = {STREAM, THREAD_STREAM}
# Bodies a route also takes absent (the SDK sends none when every field is left out).
_OPTIONAL_BODIES: Final = {
    ("POST", "/v1/environments/{environment_id}/keys"),
    ("POST", f"{_ITEM}/stop"),
}

# Which key an operation takes (`_access`, `_work_queue`): an API key, the key of the
# environment's self-hosted worker (`POST /v1/environments/{id}/keys`), or either. Each is a
# security scheme of the document; a route taking one kind answers the other with a 403.
Key = Literal["api", "environment", "either"]
_SCHEMES: Final[dict[Key, list[dict[str, list[str]]]]] = {
    "api": [{"bearerAuth": []}],
    "environment": [{"environmentKey": []}],
    "either": [{"bearerAuth": []}, {"environmentKey": []}],
}
# Where an operation takes other than an API key.
KEYS: Final[dict[tuple[str, str], Key]] = {
    ("GET", f"{_QUEUE}/poll"): "environment",
    ("GET", _QUEUE): "environment",
    ("POST", f"{_ITEM}/ack"): "environment",
    ("POST", f"{_ITEM}/heartbeat"): "environment",
    ("GET", f"{_QUEUE}/stats"): "either",
    ("POST", f"{_ITEM}/stop"): "either",
    ("GET", "/managed-agents/v1/sessions/{session_id}"): "either",
    ("GET", "/managed-agents/v1/sessions/{session_id}/events"): "either",
    ("POST", "/managed-agents/v1/sessions/{session_id}/events"): "either",
    STREAM: "either",
    # A worker reads the threads of its environment's sessions as it reads their events.
    ("GET", "/managed-agents/v1/sessions/{session_id}/threads"): "either",
    ("GET", "/managed-agents/v1/sessions/{session_id}/threads/{thread_id}"): "either",
    ("GET", "/managed-agents/v1/sessions/{session_id}/threads/{thread_id}/events"): "either",
    THREAD_STREAM: "either",
}
_WRONG_KEY: Final[dict[Key, str]] = {
    "api": "an environment key: this takes an API key",
    "environment": "an API key: this takes the environment's key",
}
_ERRORS: Final = {
    "400": "the request asks for what keel does not serve, or is not valid for it",
    "401": "no key, or an unknown one",
    "404": "no such resource (or another tenant's)",
    "409": "a conflict: a stale `version`, a resource in use, a session that takes no input",
    "413": "the body is over 1 MB",
    "422": "the body is not valid JSON, or not of the request's shape",
    "503": "the session store is unavailable; try again",
}
# What only some operations answer.
_MORE_ERRORS: Final[dict[tuple[str, str], dict[str, str]]] = {
    ("POST", f"{_ITEM}/heartbeat"): {
        "412": "`expected_last_heartbeat` is not the item's last heartbeat (or nobody holds "
        "it): another worker may hold it; `error.details` says how the lease stands",
    },
    ("PUT", _WEBHOOK_ENDPOINT): {
        "403": "this keel's operator allows webhooks to no URL, or not to this one",
    },
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
    for schemas in (requests, _sdk_schemas({*answers, _HEARTBEAT_MISMATCH})):
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
    document["components"]["securitySchemes"]["environmentKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "a self-hosted environment's worker key (`POST "
        "/v1/environments/{id}/keys`): its work queue and its sessions, nothing else",
    }
    for (method, path), (body, kind) in OPERATIONS.items():
        _, name, form = kind if isinstance(kind, tuple) else ("", kind.__name__, "one")
        operation = document["paths"][path][method.lower()]
        if body is not None:
            operation["requestBody"] = {
                "required": (method, path) not in _OPTIONAL_BODIES,
                "content": {"application/json": {"schema": _ref(body.__name__)}},
            }
        operation["responses"] = {"200": _answer(name, form)} | _errors(method, path)
        operation["security"] = _SCHEMES[KEYS.get((method, path), "api")]
    for method, path in _STREAMS:
        stream = document["paths"][path][method.lower()]
        stream["responses"] = {
            "200": {
                "description": (
                    "Server-Sent Events: `event: <type>`, `id: <event id>`, `data: <event>`"
                ),
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_errors(method, path),
        }
        stream["security"] = _SCHEMES[KEYS.get((method, path), "api")]


def _answer(name: str, form: Form) -> dict[str, Any]:
    match form:
        case "one":
            return _json("OK", _ref(name))
        case "page":
            return _json("OK", _page(name))
        case "one_or_null":
            return _json(
                "OK: JSON `null` when there is none", {"anyOf": [_ref(name), {"type": "null"}]}
            )


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
    # A webhook type keel does not send is refused by name, and a URL keel cannot send to
    # (a 400 saying why); whether the operator allows it is a 403.
    endpoint = requests["WebhookEndpointParams"]["properties"]
    endpoint["event_types"]["items"]["enum"] = list(WEBHOOK_TYPES)
    endpoint["url"]["pattern"] = WELL_FORMED


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
    return path.startswith(
        ("/managed-agents/", "/v1/agents", "/v1/environments", _WEBHOOK_ENDPOINT)
    )


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


def _errors(method: str, path: str) -> dict[str, Any]:
    """Every error the operation answers: each route's, a 403 for the wrong kind of key (when
    it takes one kind), and its own."""
    documented = dict(_ERRORS)
    wrong_key = _WRONG_KEY.get(KEYS.get((method, path), "api"))
    if wrong_key is not None:
        documented["403"] = wrong_key
    for code, what in _MORE_ERRORS.get((method, path), {}).items():
        documented[code] = f"{documented[code]}; or {what}" if code in documented else what
    errors = {code: _json(what, _ref("ApiError")) for code, what in sorted(documented.items())}
    if "412" in errors:
        # The SDK reads `error.details` as its BetaHeartbeatPreconditionFailedError's.
        details = {"properties": {"details": _ref(_HEARTBEAT_MISMATCH[1])}, "required": ["details"]}
        errors["412"] = _json(
            documented["412"],
            {"allOf": [_ref("ApiError"), {"properties": {"error": details}}]},
        )
    return errors
