"""Session logs for the trace tests, built in memory: no store, no clock."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from schemas import AgentSpec, Event, ModelSpec, Recorded, SessionCreated, event_type


class LogBuilder:
    """A log one event at a time, each `step_s` after the last (or at a given time)."""

    def __init__(self, start: float = 1_800_000_000.0, step_s: float = 0.25) -> None:
        self.records: list[Recorded] = []
        self.now = start
        self.step_s = step_s

    def add(self, *events: Event, at: float | None = None) -> list[Recorded]:
        """`events` appended together (one `at`, as one append stamps them)."""
        self.now = self.now + self.step_s if at is None else at
        added = [
            Recorded(seq=len(self.records) + n, at=self.now, type=event_type(event), event=event)
            for n, event in enumerate(events, start=1)
        ]
        self.records += added
        return added


def created(title: str = "fix add") -> SessionCreated:
    return SessionCreated(
        spec=AgentSpec(model=ModelSpec(provider="anthropic", name="claude-test")), title=title
    )


class MemoryReader:
    """A `SessionReader` over one log held in memory."""

    def __init__(self, records: Iterable[Recorded]) -> None:
        self.records = list(records)
        self.reads = 0

    async def read(
        self,
        session_id: str,
        after_seq: int = 0,
        limit: int | None = None,
        *,
        types: Collection[str] | None = None,
    ) -> list[Recorded]:
        self.reads += 1
        tail = [r for r in self.records if r.seq > after_seq]
        if types is not None:
            tail = [r for r in tail if r.type in types]
        return tail if limit is None else tail[:limit]
