"""The `keel` command's settings, and the table of every process's `KEEL_*` variables.

`python -m deploy.settings` prints that table (the README's, between its markers); a test
fails when the README and the settings Structs disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec

from brain.settings import BrainSettings
from gateway._settings import GatewaySettings
from hands import HandsSettings
from schemas import setting, settings_table


class KeelSettings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Annotated[
        Path, setting("KEEL_DATA_DIR", "where `keel up` keeps its store, hands and API key")
    ] = Path(".keel")
    url: Annotated[str, setting("KEEL_URL", "the gateway the client commands talk to")] = (
        "http://127.0.0.1:8080"
    )
    api_key: Annotated[
        str | None,
        setting("KEEL_API_KEY", "the client commands' key (default: the one `keel up` wrote)"),
    ] = None
    http_port: Annotated[int, setting("KEEL_HTTP_PORT", "the port `keel up` serves on")] = 8080
    nats_url: Annotated[
        str | None,
        setting(
            "KEEL_NATS_URL",
            "a NATS server for `keel up`, or a cluster's servers comma-separated (default: "
            "it starts its own)",
        ),
    ] = None
    store_url: Annotated[
        str | None,
        setting("KEEL_STORE_URL", "the store for `keel up` (default: SQLite in the data dir)"),
    ] = None
    sandbox: Annotated[
        Literal["local", "docker"], setting("KEEL_SANDBOX_BACKEND", "`keel up`'s sandboxes")
    ] = "local"
    model_provider: Annotated[
        str, setting("KEEL_MODEL_PROVIDER", "`keel run`'s model provider")
    ] = "scripted"
    model: Annotated[str, setting("KEEL_MODEL", "`keel run`'s model name")] = ""
    model_base_url: Annotated[
        str | None, setting("KEEL_MODEL_BASE_URL", "`keel run`'s model server")
    ] = None


PROCESSES: Final[dict[str, type[msgspec.Struct]]] = {
    "brain": BrainSettings,
    "hands": HandsSettings,
    "gateway": GatewaySettings,
    "keel": KeelSettings,
}
BEGIN: Final = "<!-- settings table: made by `python -m deploy.settings` -->\n"
END: Final = "<!-- end of the settings table -->\n"


def table() -> str:
    return settings_table(PROCESSES)


if __name__ == "__main__":
    print(table(), end="")
