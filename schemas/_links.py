"""Callbacks for `nats.connect` that log each change of a process's link to NATS once.

Without them the client logs a traceback for every failed reconnect attempt (one every two
seconds per process during an outage); with them an operator sees one line when the link
drops and one when it is back, and errors while it is down are kept for debugging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class _Client(Protocol):
    @property
    def is_closed(self) -> bool: ...
    @property
    def is_draining(self) -> bool: ...


class NatsLinkLog:
    def __init__(self, log: logging.Logger, who: str) -> None:
        self.log = log
        self.who = who
        self.lost_at: float | None = None
        # The connection, once made: closing it on purpose is no outage.
        self.client: _Client | None = None

    async def disconnected(self) -> None:
        if self.client is not None and (self.client.is_closed or self.client.is_draining):
            return
        if self.lost_at is None:
            self.lost_at = time.monotonic()
            self.log.warning(
                "%s lost its NATS connection; it reconnects and carries on "
                "(work and outcomes wait in JetStream)",
                self.who,
            )

    async def reconnected(self) -> None:
        lost_for = time.monotonic() - self.lost_at if self.lost_at is not None else 0.0
        self.lost_at = None
        self.log.warning("%s is connected to NATS again, after %.1f s", self.who, lost_for)

    async def error(self, error: Exception) -> None:
        if self.lost_at is not None:
            self.log.debug("%s: NATS: %r (reconnecting)", self.who, error)
        else:
            self.log.warning("%s: NATS: %r", self.who, error)

    def callbacks(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        """Keyword arguments for `nats.connect` (then set `client` to the connection)."""
        return {
            "disconnected_cb": self.disconnected,
            "reconnected_cb": self.reconnected,
            "error_cb": self.error,
        }
