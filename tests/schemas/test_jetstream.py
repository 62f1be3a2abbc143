"""The NATS server list, and streams made or brought to keel's configuration, on a real
nats-server (one node: 1 replica, as embedded; the cluster test runs 3)."""

from __future__ import annotations

import logging

import pytest
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from brain.service import ensure_work_stream
from schemas import (
    JetStreamSettings,
    NatsLinkLog,
    Replication,
    SettingsError,
    StreamMismatch,
    connect_nats,
    ensure_stream,
    nats_servers,
    settings_from_env,
)
from tests.nats_server import NatsServer


def test_one_url_or_several() -> None:
    assert nats_servers("nats://a:4222") == ["nats://a:4222"]
    assert nats_servers("nats://a:4222, nats://b:4222,") == ["nats://a:4222", "nats://b:4222"]


def test_replicas_and_placement_come_from_the_environment() -> None:
    settings = settings_from_env(
        JetStreamSettings,
        {"KEEL_NATS_REPLICAS": "3", "KEEL_NATS_CLUSTER": "east", "KEEL_NATS_TAGS": "ssd, az1"},
    )
    assert settings.replicas == 3
    with pytest.raises(SettingsError, match="KEEL_NATS_REPLICAS"):
        settings_from_env(JetStreamSettings, {"KEEL_NATS_REPLICAS": "7"})


async def test_a_lone_server_gets_one_replica_and_a_stream_is_brought_to_keels_config(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await connect_nats(
        f"{nats_server.url},{nats_server.url}", "test", NatsLinkLog(logging.getLogger(), "t")
    )
    try:
        replication = JetStreamSettings().resolve(nc)
        assert replication == Replication(1, None)
        settings = settings_from_env(
            JetStreamSettings, {"KEEL_NATS_CLUSTER": "east", "KEEL_NATS_TAGS": "ssd, az1"}
        )
        placement = settings.resolve(nc).placement
        assert placement is not None and placement.tags == ["ssd", "az1"]
        js = nc.jetstream()
        # Made by an older keel with another duplicate window: updated in place, and said.
        await js.add_stream(
            StreamConfig(
                name="KEEL_WORK",
                subjects=["keel.work.*"],
                retention=RetentionPolicy.WORK_QUEUE,
                duplicate_window=60,
            )
        )
        await ensure_work_stream(js, replication)
        info = await js.stream_info("KEEL_WORK")
        assert info.config.duplicate_window == 5.0 and info.config.num_replicas == 1
        assert "KEEL_WORK was updated: duplicate_window 60.0 -> 5.0" in caplog.text
        # What NATS cannot change stops the start with the difference named.
        with pytest.raises(StreamMismatch, match="storage 'file' -> 'memory'"):
            await ensure_stream(
                js,
                StreamConfig(
                    name="KEEL_WORK", subjects=["keel.work.*"], storage=StorageType.MEMORY
                ),
            )
        # One replica more than a lone server has: refused, and said so.
        with pytest.raises(StreamMismatch, match="num_replicas 1 -> 3"):
            await ensure_work_stream(js, Replication(3))
        # Or made with them.
        with pytest.raises(StreamMismatch, match=r"refused to make .* KEEL_NATS_REPLICAS"):
            await ensure_stream(js, StreamConfig(name="OTHER", subjects=["o"], num_replicas=3))
    finally:
        await nc.close()
