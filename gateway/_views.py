"""What the API shows of the store's records."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Response

from gateway._errors import json_response
from schemas import EventView, PostedEvents, Recorded, SessionView, UnknownEvent
from session_store import Appended, SessionInfo


def session_view(info: SessionInfo) -> SessionView:
    return SessionView(
        id=info.session_id,
        status=info.status,
        status_reason=info.status_reason,
        head_seq=info.head_seq,
        created_at=info.created_at,
        updated_at=info.updated_at,
        title=info.title,
        metadata=info.metadata,
        usage=info.usage,
        cost_usd=info.cost_usd,
        turns=info.turns,
    )


def event_view(record: Recorded) -> EventView:
    data: Any
    if isinstance(record.event, UnknownEvent):
        try:
            data = msgspec.json.decode(record.event.data)
        except (msgspec.DecodeError, RecursionError):
            data = {"raw": record.event.data}
    else:
        data = msgspec.to_builtins(record.event)
    return EventView(seq=record.seq, at=record.at, type=record.type, data=data)


def posted(appended: Appended) -> Response:
    """The answer to an append of input: the log's new head."""
    return json_response(PostedEvents(head_seq=appended.head_seq), 202)
