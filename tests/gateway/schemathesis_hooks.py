"""Schemathesis hooks (`SCHEMATHESIS_HOOKS`) for keel's document.

A Managed Agents session is made from an agent and an environment that must exist; ids
drawn at random never do, so no session would ever be made and nothing past its creation
fuzzed. The test makes an agent and an environment first and names them here
(`KEEL_SCHEMATHESIS_AGENT`, `KEEL_SCHEMATHESIS_ENVIRONMENT`); every drawn body of a session
creation refers to them, whatever else it holds.

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
_REQUESTS = itertools.count()


@schemathesis.hook
def map_headers(context: schemathesis.HookContext, headers: Any) -> Any:
    if isinstance(headers, dict):
        for name in [n for n in headers if n.lower() == "idempotency-key"]:
            headers[name] = f"{headers[name]}-{next(_REQUESTS)}"[-255:]
    return headers


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
