"""What the context-reset tests share: a model that keeps what it was sent, and what the
session of `scenario.reset_script` must have recorded however it was run or crashed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from brain.context import Context
from brain.providers import ModelProvider, ModelRequest, Providers
from schemas import (
    IterationEnded,
    IterationStarted,
    JudgeVerdict,
    ModelResponse,
    ModelSpec,
    Recorded,
    TextBlock,
    ToolRequested,
    ToolResult,
    WorkspaceChecked,
    WorkspaceRestored,
)
from tests.brain.scenario import CALC_TEST

E = TypeVar("E")


class RecordingProviders(Providers):
    """The scripted model, and every request it was sent, by turn."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[int, Context] = {}

    def provider_for(self, spec: ModelSpec) -> ModelProvider:
        inner = super().provider_for(spec)
        sent = self.sent

        class Recording:
            async def complete(
                self, request: ModelRequest, on_delta: Callable[[str], None] | None = None
            ) -> ModelResponse:
                sent[request.turn] = request.context
                return await inner.complete(request, on_delta)

        return Recording()


def of(log: list[Recorded], kind: type[E]) -> list[E]:
    return [r.event for r in log if isinstance(r.event, kind)]


def assert_the_reset_session_went_as_scripted(
    log: list[Recorded], workspace: Path | None = None
) -> None:
    """Three iterations, each started and ended once; the worker's edit of the test refused;
    its bash change of it undone once; the fix done; every model call made once. (The
    completion check that passed ran the original test, and found the cheat's bash had run
    once: see `scenario.CALC_CHECK`.)"""
    assert len(of(log, ModelResponse)) == 7
    starts = of(log, IterationStarted)
    assert [s.iteration for s in starts] == [1, 2, 3]
    ends = of(log, IterationEnded)
    assert [(e.iteration, e.reason) for e in ends] == [
        (1, "goal_not_met"),
        (2, "max_turns"),
    ]
    assert [v.passed for v in of(log, JudgeVerdict)] == [False, True]
    edit = next(
        r
        for r in of(log, ToolRequested)
        if r.name == "edit" and r.input["file_path"] == "tests/test_calc.py"
    )
    (refused,) = [r for r in of(log, ToolResult) if r.call_id == edit.call_id]
    assert refused.is_error and "protected test file" in refused.output
    changed = [c for check in of(log, WorkspaceChecked) for c in check.changes]
    assert [(c.path, c.change) for c in changed] == [("tests/test_calc.py", "modified")]
    (restored,) = of(log, WorkspaceRestored)
    assert restored.paths == ["tests/test_calc.py"] and restored.checkpoint
    if workspace is not None:
        assert (workspace / "tests" / "test_calc.py").read_text() == CALC_TEST
        assert (workspace / ".runs").read_text() == "run\n"


def brief_sent(providers: RecordingProviders, turn: int) -> str:
    """The one user turn the model was sent at `turn`, which must be a fresh context."""
    context = providers.sent[turn]
    assert context.system == "You are a careful engineer."
    assert [m.role for m in context.messages] == ["user"], turn
    (block,) = context.messages[0].content
    assert isinstance(block, TextBlock)
    return block.text
