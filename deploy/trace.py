"""`keel trace SESSION`: a session's spans rebuilt from its log, as the live brain made them,
with those of every thread under it (one conversation: `gen_ai.conversation.id` is the
session's).

Auditing by replay: the spans are a projection of the log (`traces`), so a session run while
tracing was off, or whose brain died before its spans were sent, is traced all the same,
with the ids the live spans had. Sent over OTLP where the `OTEL_*` variables say, or
printed as JSON lines.
"""

from __future__ import annotations

import sys
from typing import Final

import msgspec

from schemas import Recorded
from session_store import SessionNotFound, StoreError, open_store
from traces import SessionProjector, Span, TraceSettings

# Events per read of the log.
PAGE: Final = 1000


async def read_logs(store_url: str, session_id: str) -> dict[str, list[Recorded]]:
    """The whole log of `session_id` and of every thread under it, by session id
    (`SessionNotFound` if there is no such session)."""
    store = open_store(store_url)
    try:
        await store.get_session(session_id)
        logs: dict[str, list[Recorded]] = {}
        due = [session_id]
        while due:
            log_id = due.pop(0)
            log: list[Recorded] = []
            while page := await store.read(log_id, after_seq=len(log), limit=PAGE):
                log += page
            logs[log_id] = log
            due += [thread.session_id for thread in await store.list_threads(log_id)]
        return logs
    finally:
        await store.close()


def spans_of(session_id: str, log: list[Recorded]) -> tuple[list[Span], int]:
    """The spans the log closes, and how many it leaves open (a session not finished)."""
    projector = SessionProjector(session_id)
    spans = [span for recorded in log for span in projector.feed(recorded)]
    return spans, projector.open_spans()


async def trace(store_url: str, session_id: str, settings: TraceSettings, *, json: bool) -> int:
    try:
        logs = await read_logs(store_url, session_id)
    except SessionNotFound:
        print(f"keel: no session {session_id}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"keel: reading the store failed: {exc}", file=sys.stderr)
        return 2
    spans: list[Span] = []
    still_open = 0
    for log_id, log in logs.items():
        closed, left_open = spans_of(log_id, log)
        spans += closed
        still_open += left_open
    if still_open:
        print(
            f"keel: {still_open} spans are still open (the session has not finished);"
            " they are left out",
            file=sys.stderr,
        )
    if json or not settings.exporting:
        encoder = msgspec.json.Encoder()
        for span in spans:
            sys.stdout.buffer.write(encoder.encode(span) + b"\n")
        return 0
    from traces.export import export

    if not export(spans, settings):
        print("keel: the OTLP receiver did not take every span", file=sys.stderr)
        return 1
    threads = f" and its {len(logs) - 1} threads" if len(logs) > 1 else ""
    print(f"exported {len(spans)} spans of session {session_id}{threads}")
    return 0
