"""NATS as one server or a cluster: the server list, the link, and the replicas and placement
of every stream and bucket keel makes.

- `KEEL_NATS_URL` is one URL or several, comma-separated (the nodes of a cluster); nats-py
  keeps the list, learns the other nodes from the one it reaches, and reconnects to another
  when its node goes, for ever (`connect_nats`), re-subscribing its subscriptions itself.
- `KEEL_NATS_REPLICAS` (unset: 1 on a lone server, 3 when the server says it is in a
  cluster) and `KEEL_NATS_CLUSTER`/`KEEL_NATS_TAGS` (placement) apply to every stream and
  object store; durable consumers inherit their stream's replicas (`num_replicas` 0).
- `ensure_stream` makes a stream, or brings an existing one to the configuration keel asks
  for (NATS changes replicas and placement in place), or stops the start with an error
  naming the difference NATS refused (`StreamMismatch`): never a silent mismatch.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from typing import Annotated, Any, Final

import msgspec
import nats
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import Placement, StreamConfig

from schemas._links import NatsLinkLog
from schemas._settings import SettingsError, setting

log = logging.getLogger("keel.nats")

# What keel sets on its streams, compared with what an existing stream has.
_COMPARED: Final = (
    "subjects",
    "retention",
    "storage",
    "max_age",
    "duplicate_window",
    "num_replicas",
    "placement",
)
CLUSTER_REPLICAS: Final = 3
NATS_URL_DOC: Final = "the NATS server, or a cluster's servers comma-separated"


class StreamMismatch(RuntimeError):
    """A stream exists with another configuration than keel's, and NATS would not change it."""


class JetStreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    replicas: Annotated[
        int | None,
        setting(
            "KEEL_NATS_REPLICAS",
            "copies JetStream keeps of every stream and bucket keel makes (consumers follow "
            "their stream); unset: 1 on a lone server, 3 on a cluster",
        ),
    ] = None
    cluster: Annotated[
        str,
        setting("KEEL_NATS_CLUSTER", "the NATS cluster keel's streams and buckets are placed in"),
    ] = ""
    tags: Annotated[
        str,
        setting(
            "KEEL_NATS_TAGS",
            "server tags keel's streams and buckets are placed on, comma-separated",
        ),
    ] = ""

    def __post_init__(self) -> None:
        if self.replicas is not None and not 1 <= self.replicas <= 5:
            raise SettingsError(f"KEEL_NATS_REPLICAS={self.replicas} is not valid; expected 1-5")

    def resolve(self, nc: NATS) -> Replication:
        """The replicas (the setting, or else what the server the link reached is: alone or
        in a cluster) and placement of everything keel makes on JetStream."""
        replicas = self.replicas
        if replicas is None:
            info: dict[str, Any] = getattr(nc, "_server_info", None) or {}
            replicas = CLUSTER_REPLICAS if info.get("cluster") else 1
        tags = [tag.strip() for tag in self.tags.split(",") if tag.strip()]
        placement = None
        if self.cluster or tags:
            placement = Placement(cluster=self.cluster or None, tags=tags or None)
        return Replication(replicas, placement)


@dataclasses.dataclass(frozen=True)
class Replication:
    """How many copies of a stream or bucket JetStream keeps, and where."""

    replicas: int = 1
    placement: Placement | None = None


# One copy, anywhere: a lone server's (and the default of every helper that makes a stream).
SINGLE: Final = Replication()


def nats_servers(url: str) -> list[str]:
    """`KEEL_NATS_URL` as nats-py's server list: one URL, or several comma-separated."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    return servers or [url]


async def connect_nats(url: str, name: str, link: NatsLinkLog, **options: Any) -> NATS:
    """A connection to any of `url`'s servers that reconnects for ever, to whichever node is
    up (nats-py re-subscribes every subscription; pull consumers resume on the next fetch)."""
    nc = link.client = await nats.connect(
        nats_servers(url),
        name=name,
        max_reconnect_attempts=-1,
        **link.callbacks(),
        **options,
    )
    return nc


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> None:
    """Make `wanted`, or bring the existing stream of its name to it (logged); a difference
    NATS refuses to change raises `StreamMismatch`, naming it."""
    name = wanted.name
    assert name is not None
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(wanted)
            return
        except nats.js.errors.APIError as exc:
            try:
                info = await js.stream_info(name)  # another process made it first
            except nats.js.errors.NotFoundError:
                raise StreamMismatch(
                    f"NATS refused to make the JetStream stream {name} with "
                    f"{wanted.num_replicas} replicas and placement {wanted.placement}: "
                    f"{exc.description or exc} (see KEEL_NATS_REPLICAS, KEEL_NATS_CLUSTER, "
                    "KEEL_NATS_TAGS)"
                ) from None
    current = info.config
    differences = {
        field: (getattr(current, field), getattr(wanted, field))
        for field in _COMPARED
        if getattr(wanted, field) is not None
        and _normal(field, getattr(current, field)) != _normal(field, getattr(wanted, field))
    }
    if not differences:
        return
    described = ", ".join(
        f"{field} {_shown(old)} -> {_shown(new)}" for field, (old, new) in differences.items()
    )
    update = dataclasses.replace(current, **{field: new for field, (_, new) in differences.items()})
    try:
        await js.update_stream(update)
    except nats.js.errors.APIError as exc:
        raise StreamMismatch(
            f"the JetStream stream {name} exists with another configuration than keel's "
            f"({described}) and NATS refused to change it: {exc.description or exc}. "
            "Change it (nats stream edit), or remove it if it holds nothing needed."
        ) from None
    log.warning("the JetStream stream %s was updated: %s", name, described)


def _shown(value: Any) -> str:
    return repr(value.value) if isinstance(value, enum.Enum) else repr(value)


def _normal(field: str, value: Any) -> Any:
    if field == "subjects" and value is not None:
        return sorted(value)
    if field == "placement":
        if value is None:
            return None
        tags = sorted(value.tags or [])
        if not value.cluster and not tags:
            return None
        return (value.cluster or None, tags)
    if field in ("max_age", "duplicate_window") and value is not None:
        return round(float(value), 3)
    return value


async def ensure_bucket_replicas(
    js: JetStreamContext, stream: str, replication: Replication
) -> None:
    """An existing object store's (or key-value bucket's) stream brought to `replication`,
    as `ensure_stream` does."""
    info = await js.stream_info(stream)
    wanted = dataclasses.replace(info.config, num_replicas=replication.replicas)
    if replication.placement is not None:
        wanted = dataclasses.replace(wanted, placement=replication.placement)
    await ensure_stream(js, wanted)
