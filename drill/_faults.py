"""Injecting one planned fault into a target, and what it did."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Final

import msgspec

from drill._plan import FaultKind, PlannedFault
from drill._sandboxes import kill_sandbox, sandbox_backend
from drill._targets import Target

# How long a `store_loss` keeps the store's server away.
_STORE_AWAY_S: Final = 5.0


class InjectedFault(msgspec.Struct, kw_only=True):
    number: int
    kind: FaultKind
    # Unix time the fault began (comparable with the log's `at`).
    at: float
    # How long injecting took (a freeze's length, a restart's).
    took_s: float
    detail: str = ""
    # From `at` to the next event any of the drill's sessions committed; None if none did.
    recovery_s: float | None = None


async def inject(planned: PlannedFault, target: Target) -> InjectedFault:
    started = time.time()
    detail = await _inject(planned, target)
    return InjectedFault(
        number=planned.number,
        kind=planned.kind,
        at=started,
        took_s=time.time() - started,
        detail=detail,
    )


async def _inject(planned: PlannedFault, target: Target) -> str:
    endpoints = target.endpoints
    match planned.kind:
        case "brain_kill":
            await asyncio.to_thread(target.signal, "brain", "SIGKILL")
        case "hands_kill":
            await asyncio.to_thread(target.signal, "hands", "SIGKILL")
        case "gateway_kill":
            await asyncio.to_thread(target.signal, "gateway", "SIGKILL")
        case "brain_freeze":
            # Past the lease, so another run takes the session and the thawed one is fenced.
            frozen_s = endpoints.lease_s * 1.5 + 0.5
            await asyncio.to_thread(_freeze_between_writes, target, endpoints.store_url)
            await asyncio.sleep(frozen_s)
            await asyncio.to_thread(target.signal, "brain", "SIGCONT")
            return f"frozen {frozen_s:.1f}s"
        case "sandbox_kill":
            backend = sandbox_backend(endpoints.sandbox)
            killed = await kill_sandbox(Path(endpoints.hands_dir), backend, planned.pick)
            return killed or "no sandbox was alive"
        case "nats_restart":
            await asyncio.to_thread(target.restart, "nats")
        case "store_restart":
            await asyncio.to_thread(target.store_away, 0.0)
        case "store_loss":
            await asyncio.to_thread(target.store_away, _STORE_AWAY_S)
            return f"away {_STORE_AWAY_S:.0f}s"
    return ""


def _freeze_between_writes(target: Target, store_url: str) -> None:
    """SIGSTOP the brain at a moment it is not inside a write to a SQLite store.

    A process frozen inside a SQLite write transaction keeps the file's one write lock, and
    every other process on the file waits until it thaws: SQLite cannot take a lock back from
    a live process. (PostgreSQL ends a frozen client's transaction itself, after
    idle_in_transaction_session_timeout.) The fault is about fencing a brain that lost its
    lease, so on SQLite it freezes the brain between writes.
    """
    database = sqlite_path(store_url)
    for _ in range(100):
        target.signal("brain", "SIGSTOP")
        if database is None or not sqlite_write_locked(database):
            return
        target.signal("brain", "SIGCONT")
        time.sleep(0.005)
    raise RuntimeError("the brain was inside a write at every one of 100 tries")


def sqlite_path(store_url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(store_url.removeprefix(prefix)) if store_url.startswith(prefix) else None


def sqlite_write_locked(database: Path) -> bool:
    """Whether some process holds the database's write lock right now."""
    connection = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return True
    finally:
        connection.close()
