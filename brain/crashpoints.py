"""Where a brain can be told to kill itself for a drill (`KEEL_CRASH_AT=point[:n]`)."""

from __future__ import annotations

from typing import Final

from schemas import Crashpoints

POINTS: Final = frozenset(
    {
        "before_model_call",
        "after_model_response",
        "after_tool_requested",
        "after_dispatched",
        "after_send",
        "after_tool_result",
        "during_snapshot",
        # A compaction: its summary came back (not yet recorded); `context.compacted` is.
        "after_compaction_summary",
        "after_context_compacted",
    }
)


def brain_crashpoints(spec: str | None = None) -> Crashpoints:
    return Crashpoints(spec, POINTS)
