"""No effect ran twice: read from what the drill's calls printed of their workspace.

Every call of a drill session appends its own line to `.effects` and prints the file, so
each output that came back is the workspace as that call left it. A line in it twice is a
call that ran twice. (A sandbox restored from an older checkpoint may lose lines: an
effect lost with its sandbox is the model's to see, not a duplicate.)
"""

from __future__ import annotations

from collections import Counter

from drill._invariants import Violation
from drill._workload import EFFECT
from schemas import Recorded, ToolResult


def check_effects(session_id: str, log: list[Recorded]) -> list[Violation]:
    """The first output that shows an effect twice (every later one shows it too)."""
    for record in log:
        event = record.event
        if not isinstance(event, ToolResult) or event.is_error:
            continue
        effects = Counter(
            line.strip() for line in event.output.splitlines() if line.startswith(EFFECT)
        )
        twice = sorted(effect for effect, count in effects.items() if count > 1)
        if twice:
            return [
                Violation(
                    kind="effect_twice",
                    session_id=session_id,
                    detail=f"ran more than once: {', '.join(twice)}",
                    seq=record.seq,
                    call_id=event.call_id,
                )
            ]
    return []
