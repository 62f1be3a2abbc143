"""Identifiers: time-ordered, so the newest sort last and a cursor is just an id."""

from __future__ import annotations

import re
import secrets
import time
from typing import Final

# Every id keel handles: sessions, calls, sandboxes, tenants, keys. Matched whole
# (`fullmatch`): `$` would let a trailing newline through, into a NATS subject or header.
# The sandbox executor, which cannot import keel, keeps a copy (checked by a test).
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def new_id(prefix: str, *, now: float | None = None) -> str:
    """`prefix_` + 12 hex digits of milliseconds + 16 random hex digits."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{prefix}_{millis:012x}{secrets.token_hex(8)}"


def is_valid_id(value: str) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
