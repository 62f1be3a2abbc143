"""The hands: sandboxed tool execution over NATS.

`python -m hands` runs a hands host. Never imports `session_store`: hands hold no
credentials and never touch the log. Errors: a failed call is an outcome, never an
exception on the wire; `SandboxLost` is raised inside the host when an executor vanishes.
"""

from hands._backend import SandboxBackend, SandboxRecord
from hands._client import SandboxLost
from hands._host import HandsHost
from hands._local import LocalBackend, LocalBackendUnavailable
from hands._settings import HandsSettings

__all__ = [
    "HandsHost",
    "HandsSettings",
    "LocalBackend",
    "LocalBackendUnavailable",
    "SandboxBackend",
    "SandboxLost",
    "SandboxRecord",
]
