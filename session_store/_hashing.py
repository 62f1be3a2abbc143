"""The hash chain that makes every edit, deletion or reordering of the log detectable."""

from __future__ import annotations

import hashlib
import struct
from typing import Final

GENESIS: Final = bytes(32)


def chain_hash(prev: bytes, session_id: str, seq: int, type_: str, at: float, data: str) -> bytes:
    """sha256(prev || session_id || seq || type || at || data).

    Ids and types cannot contain NUL (ids are validated, types are our literals), so NUL
    separators make the encoding unambiguous; seq and at are fixed-width.
    """
    digest = hashlib.sha256(prev)
    digest.update(session_id.encode())
    digest.update(b"\0")
    digest.update(seq.to_bytes(8, "big"))
    digest.update(type_.encode())
    digest.update(b"\0")
    digest.update(struct.pack(">d", at))
    digest.update(data.encode())
    return digest.digest()
