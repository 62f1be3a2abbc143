"""The gateway's settings: one frozen Struct, each field read from its `KEEL_*` variable."""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway._federation import Federation
from gateway._webhook_urls import WebhookUrls
from gateway._work_leases import DEFAULT_LEASE_S
from schemas import NATS_URL_DOC, LogSettings, setting


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True):
    allowed_urls: Annotated[
        str,
        setting(
            "KEEL_WEBHOOK_URLS",
            "where tenants may point webhooks: URL prefixes (scheme://host[:port][/path]), "
            "comma-separated; unset, webhooks are off",
        ),
    ] = ""
    timeout_s: Annotated[
        float, setting("KEEL_WEBHOOK_TIMEOUT_S", "a webhook receiver's time to answer")
    ] = 10.0
    poll_s: Annotated[
        float, setting("KEEL_WEBHOOK_POLL_S", "how often a gateway looks for webhooks to send")
    ] = 1.0
    lease_s: Annotated[
        float,
        setting(
            "KEEL_WEBHOOK_LEASE_S",
            "an endpoint whose gateway stops renewing its lease (killed) passes to another "
            "gateway this long after",
        ),
    ] = 15.0
    retry_first_s: Annotated[
        float,
        setting("KEEL_WEBHOOK_RETRY_S", "the first wait before a failed webhook is sent again"),
    ] = 1.0
    retry_max_s: Annotated[
        float,
        setting(
            "KEEL_WEBHOOK_RETRY_MAX_S",
            "the longest wait between tries of a failed webhook (it is tried until taken)",
        ),
    ] = 600.0

    def __post_init__(self) -> None:
        # A bad prefix stops the gateway at start, naming the variable.
        self.urls()

    def urls(self) -> WebhookUrls:
        return WebhookUrls.parse(self.allowed_urls)


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    store_url: Annotated[
        str, setting("KEEL_STORE_URL", "the session store: sqlite:///PATH or postgresql://...")
    ] = "sqlite:///keel.db"
    nats_url: Annotated[str, setting("KEEL_NATS_URL", NATS_URL_DOC)] = "nats://127.0.0.1:4222"
    host: Annotated[str, setting("KEEL_HTTP_HOST", "the address the API listens on")] = "127.0.0.1"
    port: Annotated[int, setting("KEEL_HTTP_PORT", "the port the API listens on")] = 8080
    access_log: Annotated[
        bool, setting("KEEL_ACCESS_LOG", "log every request (/metrics counts them anyway)")
    ] = False
    models_file: Annotated[
        str | None,
        setting(
            "KEEL_MODELS_FILE",
            "the models file (TOML): which provider serves each model id an agent names; "
            "unset, only keel-scripted and claude-* are served",
        ),
    ] = None
    tenant_model_endpoints: Annotated[
        bool,
        setting(
            "KEEL_TENANT_MODEL_ENDPOINTS",
            "let a session's spec name its model's base_url and key variable; off, only the "
            "models file does, so no tenant can send the brain's keys to a server it chose",
        ),
    ] = False
    work_lease_s: Annotated[
        int,
        setting(
            "KEEL_WORK_LEASE_S",
            "seconds a self-hosted worker keeps a work item without a heartbeat",
        ),
    ] = DEFAULT_LEASE_S
    crash_at: Annotated[
        str | None,
        setting(
            "KEEL_CRASH_AT",
            "a drill: before_write, after_write or before_answer[:n] makes the gateway "
            "SIGKILL itself there",
        ),
    ] = None
    metrics_federate: Annotated[
        str,
        setting(
            "KEEL_METRICS_FEDERATE",
            "other processes whose /metrics the gateway's /metrics serves too, each series "
            "labelled keel_process: name=URL pairs, comma-separated (`keel up` sets it)",
        ),
    ] = ""
    webhooks: WebhookSettings = WebhookSettings()
    log: LogSettings = LogSettings()

    def __post_init__(self) -> None:
        # A bad pair stops the gateway at start, naming the variable.
        self.federation()

    def federation(self) -> Federation | None:
        return Federation.parse(self.metrics_federate)
