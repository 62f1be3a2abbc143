"""How deep free-form JSON may nest: a bound every part applies where such JSON comes in.

msgspec and the json module decode nested values by recursion, so a body nested a few
thousand levels deep raises RecursionError in whichever process decodes it, wherever that
is. A value kept in the log must decode everywhere it is read (the gateway, every brain),
so deep values are refused where they come in: API bodies, model tool calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

# Far deeper than any tool input or provider option seen in practice; far shallower than
# Python's recursion limit, whatever the stack already holds when the value is decoded.
MAX_JSON_DEPTH: Final = 64


def nesting_depth(value: object, stop_past: int = MAX_JSON_DEPTH) -> int:
    """How many levels of containers (dicts, lists, tuples, Structs) `value` nests; counting
    stops once it passes `stop_past`. Iterative: a deep value cannot exhaust the stack."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = _children(item)
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > stop_past:
            return deepest
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _children(item: object) -> Iterable[object] | None:
    if isinstance(item, dict):
        return item.values()
    if isinstance(item, list | tuple):
        return item
    if isinstance(item, msgspec.Struct):
        return [getattr(item, name) for name in item.__struct_fields__]
    return None
