"""Encoding events to the bytes stored in the log, and back.

The stored `type` column picks the decoder, so decoding never guesses, and a type or version
this reader does not know comes back as `UnknownEvent` instead of failing the replay.
"""

from __future__ import annotations

from typing import Final

import msgspec

from schemas._events import EVENT_CLASSES, Event, UnknownEvent

_ENCODER: Final = msgspec.json.Encoder()
_DECODERS: Final[dict[str, msgspec.json.Decoder[Event]]] = {
    cls.__struct_config__.tag: msgspec.json.Decoder(cls)  # type: ignore[misc]
    for cls in EVENT_CLASSES
}
EVENT_TYPES: Final[frozenset[str]] = frozenset(_DECODERS)


def event_type(event: Event) -> str:
    """The literal tag of an event, e.g. ``"tool.result"``."""
    tag = event.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def encode_event(event: Event) -> bytes:
    return _ENCODER.encode(event)


def decode_event(type_: str, data: str | bytes) -> Event | UnknownEvent:
    decoder = _DECODERS.get(type_)
    if decoder is None:
        return UnknownEvent(type=type_, data=_text(data))
    try:
        return decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        # RecursionError: nested too deeply to decode here (refused where input comes in,
        # but a log written by anyone else must still replay).
        return UnknownEvent(type=type_, data=_text(data), error=str(exc))


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def is_event(value: object) -> bool:
    return isinstance(value, EVENT_CLASSES)
