"""The gateway: keel over HTTP.

So far the core of `/v1`: sessions (create, get, list), their events (append user input,
read the log, stream it live as SSE with resume), bearer API keys mapped to tenants, one JSON
error shape, and an OpenAPI document generated from the msgspec bodies. Fork,
pause/resume/cancel, audit, metrics and `python -m gateway` arrive with the rest of the
gateway issue.
"""

from gateway._app import create_app
from gateway._errors import ApiProblem
from gateway._stream import StreamSettings

__all__ = ["ApiProblem", "StreamSettings", "create_app"]
