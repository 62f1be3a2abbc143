"""The gateway: keel over HTTP.

So far the core of `/v1`: sessions (create, get, list) and their events (append user input,
read the log), bearer API keys mapped to tenants, one JSON error shape, and an OpenAPI document
generated from the msgspec bodies. Streaming, fork, pause/resume/cancel, audit, metrics and
`python -m gateway` arrive with the rest of the gateway issue.
"""

from gateway._app import create_app
from gateway._errors import ApiProblem
from gateway._work import Announcer

__all__ = ["Announcer", "ApiProblem", "create_app"]
