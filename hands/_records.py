"""The hands host's records of one sandbox's non-idempotent calls.

They are what makes a call_id run at most once, so they live on the host side of the
sandbox's directory, in no mount: a command run in the sandbox, as the sandbox user, can
neither read nor rewrite them. Per call:

    <call_id>.started   the request, written before it is sent to the executor
    <call_id>.json      the final outcome, written before it is published
    <call_id>.acked     the brain has recorded the outcome

A call_id with a `started` record is never sent to the executor again; the outcome is kept
after the ack, so a late duplicate is answered from it. Idempotent calls leave no records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import msgspec

from schemas import CallRequest, ToolOutcome, is_valid_id

_ENCODER = msgspec.json.Encoder()
_Record = TypeVar("_Record", CallRequest, ToolOutcome)


class CallRecords:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def create(self) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)

    def started(self, call_id: str) -> bool:
        return self._path(call_id, "started").exists()

    def start(self, request: CallRequest) -> None:
        self._write(self._path(request.call_id, "started"), _ENCODER.encode(request))

    def finish(self, outcome: ToolOutcome) -> None:
        self._write(self._path(outcome.call_id, "json"), _ENCODER.encode(outcome))

    def acknowledge(self, call_id: str) -> None:
        if self.started(call_id):
            self._path(call_id, "acked").touch()

    def request(self, call_id: str) -> CallRequest | None:
        return self._read(self._path(call_id, "started"), CallRequest)

    def outcome(self, call_id: str) -> ToolOutcome | None:
        return self._read(self._path(call_id, "json"), ToolOutcome)

    def unfinished(self) -> list[CallRequest]:
        """Calls sent (or about to be) whose outcome is not recorded."""
        requests = []
        for path in sorted(self.directory.glob("*.started")):
            if not path.with_suffix(".json").exists():
                request = self.request(path.stem)
                if request is not None:
                    requests.append(request)
        return requests

    def unacknowledged(self) -> list[ToolOutcome]:
        """Recorded outcomes the brain has not acknowledged: perhaps never published."""
        outcomes = []
        for path in sorted(self.directory.glob("*.json")):
            if not path.with_suffix(".acked").exists():
                outcome = self.outcome(path.stem)
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    def _path(self, call_id: str, kind: str) -> Path:
        if not is_valid_id(call_id):
            raise ValueError(f"invalid call id {call_id!r}")
        return self.directory / f"{call_id}.{kind}"

    @staticmethod
    def _read(path: Path, kind: type[_Record]) -> _Record | None:
        try:
            return msgspec.json.decode(path.read_bytes(), type=kind)
        except (OSError, msgspec.DecodeError):
            return None  # absent, or unreadable (never half written): nothing to answer with

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        """Whole or not at all: a host killed mid-write leaves no half a record."""
        temporary = path.with_name(f"{path.name}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
