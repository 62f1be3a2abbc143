"""Anthropic's Managed Agents API over keel's sessions, so the official `anthropic` SDK's
`client.beta` agents, environments, sessions and events run against keel unmodified.

Agents and environments are versioned JSON resources in the store; a session made from
them runs a keel `AgentSpec` (`_sessions.agent_spec`) that idles between turns; its events
are a projection of keel's log (`_projection`), which stays the only source of truth. A
self-hosted environment's worker takes its sessions' tool calls over `_work_queue`.

Sessions' webhooks (`_webhook_events`) are sent from the log by `WebhookDeliverer`, which
`python -m gateway` runs when its operator allows webhook URLs; a tenant sets its endpoint
at `/v1/webhook_endpoint` (`_webhooks`).

The served OpenAPI document shows these routes with their bodies as keel decodes them and
their answers as the SDK's own models (`_openapi`), so Schemathesis fuzzes them too.
"""

from fastapi import FastAPI

from gateway.managed import (
    _agents,
    _environments,
    _events,
    _sessions,
    _threads,
    _webhooks,
    _work_queue,
)
from gateway.managed._delivery import WebhookDeliverer
from gateway.managed._folds import install_projections
from gateway.managed._openapi import document_managed_agents

ROUTERS = (
    _agents.router,
    _environments.router,
    _sessions.router,
    _events.router,
    _threads.router,
    _work_queue.router,
    _webhooks.router,
)


def install(app: FastAPI) -> None:
    install_projections(app)
    for router in ROUTERS:
        app.include_router(router)
    document_managed_agents(app)


__all__ = ["WebhookDeliverer", "install"]
