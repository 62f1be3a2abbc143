"""Schemathesis hooks (`SCHEMATHESIS_HOOKS`) for keel's document.

A Managed Agents session is made from an agent and an environment that must exist; ids
drawn at random never do, so no session would ever be made and nothing past its creation
fuzzed. The test makes an agent and a (self-hosted) environment first and names them here
(`KEEL_SCHEMATHESIS_AGENT`, `KEEL_SCHEMATHESIS_ENVIRONMENT`); every drawn body of a session
creation refers to them, whatever else it holds, and so does every key asked for: only a
self-hosted environment has a worker to key. A session's events are read and sent on one
session the test made (`KEEL_SCHEMATHESIS_SESSION`): the stateful phase finds the sessions
it made only by chance; a thread is read on a thread the test made in that session
(`KEEL_SCHEMATHESIS_THREAD`). The same holds for the environment's work queue: its routes go
to that environment, and an item's to one the test's worker holds (`KEEL_SCHEMATHESIS_WORK`),
but a stop goes to another item made to be stopped (`KEEL_SCHEMATHESIS_WORK_TO_STOP`). What
the test made is never changed, archived, deleted or stopped otherwise: the stateful phase
would find their ids in lists, and nothing after could use them.

A webhook endpoint can only be set to a URL the operator allows: every drawn URL the
document takes becomes the one the test's gateway allows (`KEEL_SCHEMATHESIS_WEBHOOK_URL`);
one it refuses stays what it is, refused.

An Idempotency-Key drawn again for the same request is a retry, and keel answers it with
the first answer (its promise): an update replayed after the session was deleted looks, to
Schemathesis's stateful checks, like a resource made and then lost. Every drawn key is made
unique, so no request here is a retry (tests/gateway/test_idempotency.py tests those).
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any

import schemathesis

from gateway._webhook_urls import WELL_FORMED

SESSIONS = "/managed-agents/v1/sessions"
KEYS = "/v1/environments/{environment_id}/keys"
EVENTS = "/managed-agents/v1/sessions/{session_id}/events"
WORK = "/v1/environments/{environment_id}/work"
STOP = f"{WORK}/{{work_id}}/stop"
WEBHOOK_ENDPOINT = "/v1/webhook_endpoint"
THREADS = "/managed-agents/v1/sessions/{session_id}/threads"
THREAD = THREADS + "/{thread_id}"
# What the test made, by the environment variable naming it.
MADE = ("AGENT", "ENVIRONMENT", "SESSION", "WORK_SESSIONS", "WORK", "THREAD")
_REQUESTS = itertools.count()


def made(name: str) -> str:
    return os.environ[f"KEEL_SCHEMATHESIS_{name}"]


def may_use(path: str) -> set[str]:
    """What an operation on `path` may do to what the test made, besides reading it."""
    if path == KEYS:
        return {made("ENVIRONMENT")}
    if path == EVENTS:
        return {made("SESSION")}
    if path == STOP:
        return {made("ENVIRONMENT")}
    if path.startswith(WORK):
        return {made("ENVIRONMENT"), made("WORK")}
    if path == THREAD + "/archive":
        # Archiving its thread again changes nothing.
        return {made("SESSION"), made("THREAD")}
    return set()


@schemathesis.hook
def map_headers(context: schemathesis.HookContext, headers: Any) -> Any:
    if isinstance(headers, dict):
        for name in [n for n in headers if n.lower() == "idempotency-key"]:
            headers[name] = f"{headers[name]}-{next(_REQUESTS)}"[-255:]
    return headers


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Any, kwargs: dict[str, Any]) -> None:
    """What the test made is only read or used as `may_use` says: any other operation on it
    (an id the stateful phase found in a list, or reused from an answer) goes to an id that
    names nothing."""
    parameters = case.path_parameters
    if not parameters or case.method.upper() == "GET":
        return
    kept = {id_ for name in MADE for id_ in made(name).split(",")} - may_use(case.operation.path)
    for name, value in parameters.items():
        if value in kept:
            parameters[name] = f"{value}-not-this-one"


@schemathesis.hook
def map_path_parameters(context: schemathesis.HookContext, parameters: Any) -> Any:
    operation = context.operation
    if operation is None or not isinstance(parameters, dict):
        return parameters
    if operation.path == KEYS or operation.path.startswith(WORK):
        parameters["environment_id"] = made("ENVIRONMENT")
    elif operation.path == EVENTS or operation.path.startswith(THREADS):
        # Its threads are read on the session the test made, and the thread it made there.
        parameters["session_id"] = made("SESSION")
        if operation.path.startswith(THREAD):
            parameters["thread_id"] = made("THREAD")
    if "work_id" in parameters:
        parameters["work_id"] = made("WORK_TO_STOP" if operation.path == STOP else "WORK")
    return parameters


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    operation = context.operation
    if operation is None or not isinstance(body, dict):
        return body
    if operation.path == WEBHOOK_ENDPOINT:
        url = body.get("url")
        if isinstance(url, str) and len(url) <= 2048 and re.search(WELL_FORMED, url):
            body["url"] = made("WEBHOOK_URL")
        return body
    if operation.path != SESSIONS:
        return body
    agent = made("AGENT")
    if isinstance(body.get("environment_id"), str):
        body["environment_id"] = made("ENVIRONMENT")
    if isinstance(body.get("agent"), str):
        body["agent"] = agent
    elif isinstance(body.get("agent"), dict) and isinstance(body["agent"].get("id"), str):
        body["agent"] = {**body["agent"], "id": agent, "version": 1}
    return body
