"""Reject bad input before it reaches a transaction, so a bad append writes nothing."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from schemas import (
    Event,
    SessionCreated,
    encode_event,
    event_type,
    is_event,
    is_valid_id,
)
from session_store._errors import InvalidEvent, InvalidInput, PayloadTooLarge
from session_store._projection import Change, change_of


def check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not is_valid_id(value):
        raise InvalidInput(f"{kind} must be 1-64 characters of [A-Za-z0-9_.:-], got {value!r}")
    return value


def encode_checked(event: object, max_bytes: int) -> tuple[str, str]:
    """Encode one event as (type, json); round-trip it so only decodable events are stored.

    msgspec Structs do not validate on construction, so `UserMessage(text=3)` encodes fine;
    decoding the bytes back with the strict per-type decoder catches it here, not at replay.
    """
    if not is_event(event):
        raise InvalidEvent(f"{type(event).__name__} is not a keel event")
    assert isinstance(event, msgspec.Struct)
    try:
        data = encode_event(event)  # type: ignore[arg-type]
        msgspec.json.decode(data, type=type(event))
    except (TypeError, msgspec.EncodeError, msgspec.ValidationError) as exc:
        raise InvalidEvent(f"invalid {event_type(event)} event: {exc}") from exc  # type: ignore[arg-type]
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{event_type(event)} event", len(data), max_bytes)  # type: ignore[arg-type]
    return event_type(event), data.decode()  # type: ignore[arg-type]


def encode_append(events: Sequence[Event], max_bytes: int) -> tuple[list[tuple[str, str]], Change]:
    """Encode an append's events; also return what they change in the session's row."""
    if isinstance(events, (str, bytes)) or not isinstance(events, Sequence) or not events:
        raise InvalidEvent("an append needs a non-empty list of events")
    rows: list[tuple[str, str]] = []
    for event in events:
        if isinstance(event, SessionCreated):
            raise InvalidEvent("session.created is written by create_session only")
        rows.append(encode_checked(event, max_bytes))
    return rows, change_of(events)
