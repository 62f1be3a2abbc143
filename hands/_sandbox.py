"""One sandbox as its hands host serves it: its record, directories, executor connection,
the calls running in it, and when it was last used."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from hands._backend import SandboxDirs, SandboxRecord
from hands._client import ExecutorClient
from hands._records import CallRecords


@dataclass
class Sandbox:
    record: SandboxRecord
    dirs: SandboxDirs
    client: ExecutorClient
    subscriptions: list[Any] = field(default_factory=list)
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    checkpoint: str | None = None
    fingerprint: str = ""
    lost: bool = False
    # When a call last started or ended (monotonic seconds), or the sandbox was handed out.
    last_used: float = field(default_factory=time.monotonic)
    # Being removed: it takes no more calls.
    retiring: bool = False
    records: CallRecords = field(init=False)

    def __post_init__(self) -> None:
        self.records = CallRecords(self.dirs.calls)

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def quiet_for(self, now: float) -> float:
        """How long it has had nothing to do (0 while a call runs)."""
        return 0.0 if self.running else now - self.last_used
