"""Where an event of a Managed Agents view stands, and what it is called.

One keel event may become several events (`_projection`), so an event's id names its place:
`sevt_<seq>_<part>`, which orders a log's events and is what `Last-Event-ID` and `page`
resume after; on a thread's own log, `sevt_<seq>_<part>_<thread id>`, so that no two logs of
a session share an id. An event shown on another log than its own (a thread's call waiting
on the user, on its session's stream) keeps its id and stands at a place of the log it is
shown on (`CrossPosted`).
"""

from __future__ import annotations

import re
from typing import Any, Final

# An event id, as a regular expression that Python and the served JSON Schema both read.
EVENT_ID_PATTERN: Final = r"^sevt_([0-9]{1,19})_([0-9]{1,6})(_[A-Za-z0-9_.:-]{1,64})?$"
_EVENT_ID: Final = re.compile(EVENT_ID_PATTERN)
# Parts of a model response: its span's start, its text, its tool uses, then the span's end
# and the session's usage after it.
START, TEXT, FIRST_USE = 0, 1, 2


def event_id(seq: int, part: int = 0, thread_id: str = "") -> str:
    """The id of an event of a session's log, or of a thread's own log (`thread_id`): a
    thread's ids name it, so no two logs of a session share an id (an answer to a call is
    routed by its `tool_use_id` alone)."""
    return f"sevt_{seq}_{part}_{thread_id}" if thread_id else f"sevt_{seq}_{part}"


def message_id_after(context_seq: int, thread_id: str = "") -> str:
    """The id of the `agent.message` of a response whose model was shown the log up to
    `context_seq`: it is recorded next, unless input lands first (a preview then names a
    message that never comes, as the API allows)."""
    return event_id(context_seq + 1, TEXT, thread_id)


def parse_event_id(value: str) -> tuple[int, int] | None:
    """(seq, part) of an id this projection made; None for anything else."""
    match = _EVENT_ID.fullmatch(value)
    return (int(match[1]), int(match[2])) if match else None


class CrossPosted(dict[str, Any]):
    """An event of another log shown on this one: its `id` is its own log's (an answer to
    it names that id), its `position` a place in this log, which is what orders it here
    and what a stream or a page resumes after."""

    def __init__(self, fields: dict[str, Any], position: str) -> None:
        super().__init__(fields)
        self.position = position


def position(event: dict[str, Any]) -> str:
    """Where an event stands in the log it is read from, as an event id."""
    return event.position if isinstance(event, CrossPosted) else str(event["id"])
