"""Schemathesis hooks (`SCHEMATHESIS_HOOKS`) for keel's document.

A Managed Agents session is made from an agent and an environment that must exist; ids
drawn at random never do, so no session would ever be made and nothing past its creation
fuzzed. The test makes an agent and a (self-hosted) environment first and names them here
(`KEEL_SCHEMATHESIS_AGENT`, `KEEL_SCHEMATHESIS_ENVIRONMENT`); every drawn body of a session
creation refers to them, whatever else it holds, and so does every key asked for: only a
self-hosted environment has a worker to key. A session's events are read and sent on one
session the test made (`KEEL_SCHEMATHESIS_SESSION`): the stateful phase finds the sessions
it made only by chance; a thread is read on a thread the test made in that session
(`KEEL_SCHEMATHESIS_THREAD`). What the test made is never changed, archived or deleted: the
stateful phase would find their ids in lists, and nothing after could use them.

An Idempotency-Key drawn again for the same request is a retry, and keel answers it with
the first answer (its promise): an update replayed after the session was deleted looks, to
Schemathesis's stateful checks, like a resource made and then lost. Every drawn key is made
unique, so no request here is a retry (tests/gateway/test_idempotency.py tests those).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import schemathesis

SESSIONS = "/managed-agents/v1/sessions"
KEYS = "/v1/environments/{environment_id}/keys"
EVENTS = "/managed-agents/v1/sessions/{session_id}/events"
THREADS = "/managed-agents/v1/sessions/{session_id}/threads"
THREAD = THREADS + "/{thread_id}"
# What may be done to what the test made, besides reading it (archiving its thread again
# changes nothing).
MAY_USE = frozenset({KEYS, EVENTS, THREAD + "/archive"})
_REQUESTS = itertools.count()


@schemathesis.hook
def map_headers(context: schemathesis.HookContext, headers: Any) -> Any:
    if isinstance(headers, dict):
        for name in [n for n in headers if n.lower() == "idempotency-key"]:
            headers[name] = f"{headers[name]}-{next(_REQUESTS)}"[-255:]
    return headers


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Any, kwargs: dict[str, Any]) -> None:
    """What the test made is only read: any other operation on it (an id the stateful phase
    found in a list, or reused from an answer) goes to an id that names nothing."""
    parameters = case.path_parameters
    if not parameters or (case.method.upper() == "GET" or case.operation.path in MAY_USE):
        return
    made = {os.environ[f"KEEL_SCHEMATHESIS_{name}"] for name in ("AGENT", "ENVIRONMENT", "SESSION")}
    for name, value in parameters.items():
        if value in made:
            parameters[name] = f"{value}-not-this-one"


@schemathesis.hook
def map_path_parameters(context: schemathesis.HookContext, parameters: Any) -> Any:
    operation = context.operation
    if operation is None or not isinstance(parameters, dict):
        return parameters
    if operation.path == KEYS:
        parameters["environment_id"] = os.environ["KEEL_SCHEMATHESIS_ENVIRONMENT"]
    elif operation.path == EVENTS or operation.path.startswith(THREADS):
        # Its threads are read on the session the test made, and the thread it made there.
        parameters["session_id"] = os.environ["KEEL_SCHEMATHESIS_SESSION"]
        if operation.path.startswith(THREAD):
            parameters["thread_id"] = os.environ["KEEL_SCHEMATHESIS_THREAD"]
    return parameters


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    operation = context.operation
    if operation is None or operation.path != SESSIONS or not isinstance(body, dict):
        return body
    agent = os.environ["KEEL_SCHEMATHESIS_AGENT"]
    if isinstance(body.get("environment_id"), str):
        body["environment_id"] = os.environ["KEEL_SCHEMATHESIS_ENVIRONMENT"]
    if isinstance(body.get("agent"), str):
        body["agent"] = agent
    elif isinstance(body.get("agent"), dict) and isinstance(body["agent"].get("id"), str):
        body["agent"] = {**body["agent"], "id": agent, "version": 1}
    return body
