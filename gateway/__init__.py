"""The gateway: keel over HTTP (`python -m gateway`).

`/v1`: sessions (create, get, list by status and creation time, delete when finished, fork,
pause, resume, cancel), their events (append user input, read the log, stream it live as SSE
with resume), audits (the hash chain, and the state a brain folds at any seq); bearer API
keys mapped to tenants, Idempotency-Key on writes, one JSON error shape, an OpenAPI document
generated from the msgspec bodies; `/healthz`, `/readyz`, `/metrics`, and the web viewer.
The Managed Agents API (`gateway.managed`), and the webhooks of its sessions, sent from the
log to the endpoint a tenant sets (`WebhookSettings`: where the operator allows).
Errors: `gateway.ApiProblem`, translated from the store's in `gateway._errors`.
"""

from gateway._app import create_app
from gateway._errors import ApiProblem
from gateway._settings import WebhookSettings
from gateway._stream import StreamSettings
from gateway._work_leases import WorkSettings

__all__ = ["ApiProblem", "StreamSettings", "WebhookSettings", "WorkSettings", "create_app"]
