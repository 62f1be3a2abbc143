"""Where a brain can be told to kill itself for a drill (`KEEL_CRASH_AT=point[:n]`)."""

from __future__ import annotations

from typing import Final

from schemas import Crashpoints

# Where spawning a thread, messaging one and collecting a reply can be cut short
# (`brain._thread_calls`).
THREAD_POINTS: Final = frozenset(
    {
        "after_thread_spawned",
        "after_thread_created",
        "after_message_sent",
        "after_message_delivered",
        "before_thread_result",
        "after_thread_result",
    }
)
POINTS: Final = THREAD_POINTS | frozenset(
    {
        "before_model_call",
        "after_model_response",
        "after_tool_requested",
        "after_dispatched",
        "after_send",
        "after_tool_result",
        "during_snapshot",
    }
)


def brain_crashpoints(spec: str | None = None) -> Crashpoints:
    return Crashpoints(spec, POINTS)
