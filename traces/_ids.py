"""Trace and span ids derived from the log, so a replay names every span as the live run did.

An id is a prefix of the sha256 of a path of names (`keel`, the session, what the span is,
where in the log it starts): the same log gives the same ids on any machine, any day.
"""

from __future__ import annotations

import hashlib


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(("keel", *parts)).encode()).digest()


def trace_id(session_id: str, first_seq: int) -> str:
    """The trace of the turn (or lone span) that starts at `first_seq`."""
    return _digest(session_id, "trace", str(first_seq))[:16].hex()


def span_id(session_id: str, *key: str) -> str:
    """A span of the session, named by what it is and a key unique among its kind (a seq,
    or a call id: a tool call's span is known from its call id alone, so a thread can
    name the call that spawned it without reading its parent's log)."""
    return _digest(session_id, "span", *key)[:8].hex()
