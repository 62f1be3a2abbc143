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
# Only a roster sharing the coordinator's workspace reaches this: a thread's work merged
# into it, the reply not yet recorded (`brain._thread_calls`).
MERGE_POINTS: Final = frozenset({"after_thread_merge"})
# Only a thread that waits on the user reaches this: its wait noted in its session, its own
# log not yet saying it waits (`brain._thread_calls`).
WAIT_POINTS: Final = frozenset({"after_thread_wait_noted"})
# Only a session with context resets reaches these (`brain/_workspace_harness.py`): the
# handoff read and not yet recorded, the iteration's start or end recorded, the test ratchet's
# check recorded and its restore not, the restore run and not recorded.
ITERATION_POINTS: Final = frozenset(
    {
        "after_workspace_read",
        "after_iteration_started",
        "after_iteration_ended",
        "after_workspace_checked",
        "after_restore",
    }
)

POINTS: Final = (
    frozenset(
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
    | ITERATION_POINTS
    | THREAD_POINTS
    | MERGE_POINTS
    | WAIT_POINTS
)


def brain_crashpoints(spec: str | None = None) -> Crashpoints:
    return Crashpoints(spec, POINTS)
