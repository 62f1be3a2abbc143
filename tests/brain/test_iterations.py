"""Context resets and the test ratchet without any I/O: states are folded from events, as a
brain would, and `decide` says what comes next."""

from __future__ import annotations

import hashlib

import pytest

from brain import decode_state, encode_state, initial_state, replay
from brain._model_call import tool_requests
from brain.context import build_context
from brain.decide import CallModel, Complete, Dispatch, GradeOutcome, Judge, Refuse, decide
from brain.iterations import (
    CheckWorkspace,
    EndIteration,
    RestoreWorkspace,
    StartIteration,
    fitted,
)
from brain.ratchet import Source, changes_found, protected_path, restorable
from brain.state import SessionState
from schemas import (
    AgentSpec,
    CompletionCondition,
    ContextResets,
    Event,
    HandoffFile,
    IterationEnded,
    IterationStarted,
    JudgeVerdict,
    ModelResponse,
    OutcomeDefined,
    OutcomeEvaluated,
    OutcomeEvaluationStarted,
    ProtectedFile,
    ProtectedFileChange,
    Recorded,
    SandboxSpec,
    SessionCreated,
    TextBlock,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    ToolUseBlock,
    Usage,
    UserMessage,
    WorkspaceChecked,
    WorkspaceFiles,
    WorkspaceRestored,
    encode_event,
    event_type,
)

NOW = 2_000.0
TEST = b"from calc import add\nassert add(2, 3) == 5\n"
TEST_DIGEST = hashlib.sha256(TEST).hexdigest()
NO_USAGE = Usage()


def spec(**resets: object) -> AgentSpec:
    return AgentSpec(
        tools=["bash", "write", "edit", "write_file", "edit_file"],
        context_resets=ContextResets(**resets),
    )


def records(*events: Event, spec: AgentSpec) -> list[Recorded]:
    log = [SessionCreated(spec=spec), *events]
    return [
        Recorded(seq=seq, at=1_000.0 + seq, type=event_type(e), event=e)
        for seq, e in enumerate(log, 1)
    ]


def state_of(*events: Event, spec: AgentSpec) -> SessionState:
    return replay(records(*events, spec=spec), initial_state("ses_i"))


def said(text: str, **usage: int) -> ModelResponse:
    return ModelResponse(
        content=[TextBlock(text=text)], stop_reason="end_turn", usage=Usage(**usage)
    )


def called(call_id: str, name: str, usage: Usage = NO_USAGE, **arguments: object) -> list[Event]:
    return [
        ModelResponse(
            content=[ToolUseBlock(call_id=call_id, name=name, input=arguments)],
            stop_reason="tool_use",
            usage=usage,
        ),
        ToolRequested(call_id=call_id, name=name, input=arguments),
    ]


def ran(call_id: str, output: str = "ok") -> list[Event]:
    return [
        ToolDispatched(call_id=call_id, sandbox_id="sbx"),
        ToolResult(call_id=call_id, output=output),
    ]


def started(iteration: int, *, plan: str | None = "1. add()", content: bool = True) -> Event:
    return IterationStarted(
        iteration=iteration,
        handoff=[
            HandoffFile(path="PLAN.md", text=plan, digest="d-plan" if plan else ""),
            HandoffFile(path="PROGRESS.md"),
        ],
        protected=[
            ProtectedFile(
                path="tests/test_calc.py", digest=TEST_DIGEST, content=TEST if content else None
            )
        ],
    )


GOAL = UserMessage(text="Make add() pass its tests.")


def brief_of(state: SessionState) -> str:
    context = build_context(state)
    assert len(context.messages) == 1
    (block,) = context.messages[0].content
    assert isinstance(block, TextBlock)
    return block.text


# -- starting an iteration ----------------------------------------------------------------------


def test_the_first_input_starts_iteration_1_before_any_model_call() -> None:
    assert decide(state_of(GOAL, spec=spec()), NOW) == StartIteration(iteration=1)
    assert decide(state_of(GOAL, started(1), spec=spec()), NOW) == CallModel()


def test_a_session_without_resets_decides_as_before() -> None:
    assert decide(state_of(GOAL, spec=AgentSpec()), NOW) == CallModel()


def test_an_iteration_starts_from_a_fresh_context_built_of_the_goal_rubric_and_handoff() -> None:
    outcome = OutcomeDefined(outcome_id="o1", description="A calculator.", rubric="`add` works")
    state = state_of(
        GOAL,
        outcome,
        started(1),
        said("Planned."),
        IterationEnded(iteration=1, reason="max_turns"),
        started(2, plan="1. add() [done]"),
        spec=spec(),
    )
    text = brief_of(state)
    assert text.startswith("This is iteration 2 of a long task.")
    assert "Iteration 1 ended because it used the turns an iteration has." in text
    assert "A calculator." in text and "- Make add() pass its tests." in text
    assert "graded by this rubric:\n`add` works" in text
    assert "--- PLAN.md ---\n1. add() [done]" in text
    assert "--- PROGRESS.md (there is no such file yet) ---" in text
    assert "Protected test files" in text and "tests/test_calc.py" in text
    assert "Planned." not in text  # nothing of iteration 1's conversation
    assert state.iterations.protected == {"tests/test_calc.py": TEST_DIGEST}
    # Where the log holds the test's bytes (seq 4, iteration 1's start), not the bytes.
    assert state.iterations.content_seqs == {TEST_DIGEST: 4}


def test_a_version_recorded_once_is_kept_when_a_later_start_omits_its_bytes() -> None:
    state = state_of(
        GOAL,
        started(1),
        IterationEnded(iteration=1, reason="max_turns"),
        started(2, content=False),
        spec=spec(),
    )
    assert state.iterations.content_seqs == {TEST_DIGEST: 3}


# -- the ratchet's refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("write", {"file_path": "tests/test_calc.py", "content": "assert True"}),
        (
            "edit",
            {"file_path": "./tests/../tests/test_calc.py", "old_string": "5", "new_string": "-1"},
        ),
        ("write_file", {"path": "/workspace/tests/test_calc.py", "content": ""}),
        ("edit_file", {"path": "tests//test_calc.py", "old_string": "5", "new_string": "-1"}),
    ],
)
def test_writing_a_protected_file_is_refused_with_one_error_outcome(
    name: str, arguments: dict[str, object]
) -> None:
    state = state_of(GOAL, started(1), *called("c1", name, **arguments), spec=spec())
    action = decide(state, NOW)
    assert isinstance(action, Refuse) and action.call_id == "c1"
    assert "tests/test_calc.py is a protected test file" in action.reason


def test_files_the_worker_created_and_other_files_are_its_own() -> None:
    for path in ("tests/test_new.py", "calc.py", "PLAN.md"):
        state = state_of(
            GOAL, started(1), *called("c1", "write", file_path=path, content=""), spec=spec()
        )
        assert decide(state, NOW) == Dispatch(call_ids=["c1"]), path


def test_an_agent_that_allows_test_edits_has_no_ratchet() -> None:
    allowing = spec(allow_test_edits=True)
    state = state_of(
        GOAL,
        started(1),
        *called("c1", "write", file_path="tests/test_calc.py", content=""),
        spec=allowing,
    )
    assert decide(state, NOW) == Dispatch(call_ids=["c1"])
    # Nor is anything checked when the worker ends its turn.
    assert decide(state_of(GOAL, started(1), said("Done."), spec=allowing), NOW) == Complete(
        reason="the model ended its turn"
    )


def test_an_absolute_path_is_matched_by_its_end() -> None:
    protected = {"tests/test_calc.py": "d"}
    assert protected_path("/ws/tests/test_calc.py", protected) == "tests/test_calc.py"
    assert protected_path("/ws/tests/test_calc.pyc", protected) is None
    assert protected_path("tests/test_calc.py/..", protected) is None


# -- the check at the end of a turn ---------------------------------------------------------------


def test_a_turn_the_worker_ends_is_checked_before_it_is_judged() -> None:
    judged = AgentSpec(
        tools=["bash"],
        context_resets=ContextResets(),
        completion=CompletionCondition(kind="command", command="pytest"),
    )
    state = state_of(GOAL, started(1), said("Done."), spec=judged)
    assert decide(state, NOW) == CheckWorkspace(iteration=1)
    state = state_of(GOAL, started(1), said("Done."), WorkspaceChecked(iteration=1), spec=judged)
    assert decide(state, NOW) == Judge()


def test_a_changed_protected_file_is_restored_and_the_worker_told_at_once() -> None:
    change = ProtectedFileChange(path="tests/test_calc.py", change="modified", digest="evil")
    events: list[Event] = [
        GOAL,
        started(1),
        *called("c1", "bash", command="sed -i s/5/-1/ tests/test_calc.py"),
        *ran("c1"),
        said("All tests pass."),
        WorkspaceChecked(iteration=1, changes=[change]),
    ]
    state = state_of(*events, spec=spec())
    assert decide(state, NOW) == RestoreWorkspace(iteration=1)
    sources, missing = restorable(state.iterations)
    assert sources == [Source(path="tests/test_calc.py", digest=TEST_DIGEST, seq=3)]
    assert not missing
    restored = WorkspaceRestored(iteration=1, paths=["tests/test_calc.py"], checkpoint="ck-9")
    state = state_of(*events, restored, spec=spec())
    assert state.checkpoint == "ck-9" and not state.iterations.changes
    assert decide(state, NOW) == CallModel()
    last = build_context(state).messages[-1]
    assert last.role == "user"
    note = last.content[-1]
    assert isinstance(note, TextBlock)
    assert "undid your changes to protected test files" in note.text
    assert "tests/test_calc.py" in note.text


def test_a_file_whose_bytes_were_never_recorded_is_reported_unrestorable() -> None:
    change = ProtectedFileChange(path="tests/test_calc.py", change="deleted")
    state = state_of(
        GOAL,
        started(1, content=False),
        said("Done."),
        WorkspaceChecked(iteration=1, changes=[change]),
        spec=spec(),
    )
    assert restorable(state.iterations) == ([], ["tests/test_calc.py"])


def test_changes_found_are_modified_deleted_or_linked_files_and_never_new_ones() -> None:
    protected = {"tests/a.py": "A", "tests/b.py": "B", "tests/c.py": "C", "tests/d.py": "D"}
    found = WorkspaceFiles(
        protected=[
            ProtectedFile(path="tests/a.py", digest="A"),
            ProtectedFile(path="tests/b.py", digest="B2"),
            ProtectedFile(path="tests/d.py", digest="symlink:../x"),
            ProtectedFile(path="tests/new.py", digest="N"),
        ]
    )
    assert changes_found(protected, found) == [
        ProtectedFileChange(path="tests/b.py", change="modified", digest="B2"),
        ProtectedFileChange(path="tests/c.py", change="deleted"),
        ProtectedFileChange(path="tests/d.py", change="modified", digest="symlink:../x"),
    ]


# -- ending an iteration --------------------------------------------------------------------------


def test_the_turn_limit_ends_the_iteration_once_its_calls_have_outcomes() -> None:
    events: list[Event] = [GOAL, started(1), *called("c1", "bash", command="make")]
    limited = spec(max_turns=1)
    # The call asked for is run first: no call spans two iterations.
    assert decide(state_of(*events, spec=limited), NOW) == Dispatch(call_ids=["c1"])
    events += ran("c1")
    assert decide(state_of(*events, spec=limited), NOW) == CheckWorkspace(iteration=1)
    events.append(WorkspaceChecked(iteration=1))
    assert decide(state_of(*events, spec=limited), NOW) == EndIteration(
        iteration=1, reason="max_turns"
    )
    events.append(IterationEnded(iteration=1, reason="max_turns"))
    assert decide(state_of(*events, spec=limited), NOW) == StartIteration(iteration=2)
    state = state_of(*events, started(2), spec=limited)
    assert decide(state, NOW) == CallModel()
    assert state.iterations.turns_at_start == 1


def test_the_token_limit_counts_the_iterations_own_tokens() -> None:
    limited = spec(max_tokens=1000, max_turns=None)
    for used, expected in ((900, CallModel()), (1000, CheckWorkspace(iteration=1))):
        response = called("c1", "bash", usage=Usage(input_tokens=used), command="make")
        state = state_of(GOAL, started(1), *response, *ran("c1"), spec=limited)
        assert decide(state, NOW) == expected, used


def test_work_the_grader_sends_back_ends_the_iteration_with_its_feedback() -> None:
    outcome = OutcomeDefined(outcome_id="o1", description="A calculator.", rubric="`add` works")
    events: list[Event] = [outcome, started(1), said("Done.")]
    assert decide(state_of(*events, spec=spec()), NOW) == CheckWorkspace(iteration=1)
    events.append(WorkspaceChecked(iteration=1))
    assert decide(state_of(*events, spec=spec()), NOW) == GradeOutcome(outcome_id="o1", iteration=0)
    events += [
        OutcomeEvaluationStarted(outcome_id="o1", iteration=0),
        OutcomeEvaluated(
            outcome_id="o1", iteration=0, result="needs_revision", explanation="add subtracts"
        ),
    ]
    action = decide(state_of(*events, spec=spec()), NOW)
    assert isinstance(action, EndIteration) and action.reason == "goal_not_met"
    assert action.detail == "The grader found that your work needs revision: add subtracts"
    events += [IterationEnded(iteration=1, reason="goal_not_met", detail=action.detail), started(2)]
    state = state_of(*events, spec=spec())
    assert "sent back.\nThe grader found that your work needs revision: add subtracts" in brief_of(
        state
    )
    # The next turn it ends is graded again, as the outcome's second evaluation.
    events += [said("Fixed."), WorkspaceChecked(iteration=2)]
    assert decide(state_of(*events, spec=spec()), NOW) == GradeOutcome(outcome_id="o1", iteration=1)


def test_a_failed_completion_check_ends_the_iteration() -> None:
    judged = AgentSpec(
        tools=["bash"],
        context_resets=ContextResets(),
        completion=CompletionCondition(kind="command", command="pytest"),
    )
    verdict = JudgeVerdict(passed=False, judge="command", detail="1 failed")
    state = state_of(
        GOAL, started(1), said("Done."), WorkspaceChecked(iteration=1), verdict, spec=judged
    )
    assert decide(state, NOW) == EndIteration(
        iteration=1, reason="goal_not_met", detail="The completion check failed (command): 1 failed"
    )


# -- replay -------------------------------------------------------------------------------------


def test_snapshot_and_tail_equal_a_full_replay_and_rebuild_the_same_contexts() -> None:
    change = ProtectedFileChange(path="tests/test_calc.py", change="modified", digest="evil")
    log = records(
        GOAL,
        started(1),
        *called("c1", "bash", command="x"),
        *ran("c1"),
        said("Done."),
        WorkspaceChecked(iteration=1, changes=[change]),
        WorkspaceRestored(iteration=1, paths=["tests/test_calc.py"]),
        IterationEnded(iteration=1, reason="max_turns"),
        started(2),
        said("Again."),
        spec=spec(),
    )
    full = replay(log, initial_state("ses_i"))
    for cut in range(1, len(log)):
        head = replay(log[:cut], initial_state("ses_i"))
        resumed = replay(log[cut:], decode_state(encode_state(head)))
        assert encode_state(resumed) == encode_state(full), cut
    second = [r.seq for r in log if r.type == "iteration.started"][1]
    at_start = replay(log[:second], initial_state("ses_i"))
    text = brief_of(at_start)
    assert "undid your changes to protected test files" in text
    # Folded again from the log alone, the iteration starts from the same context.
    assert build_context(replay(log[:second], initial_state("ses_i"))) == build_context(at_start)


def test_without_keel_s_sandbox_an_iteration_starts_from_the_goal_alone() -> None:
    self_hosted = AgentSpec(
        tools=["bash"],
        sandbox=SandboxSpec(backend="self_hosted"),
        context_resets=ContextResets(),
    )
    state = state_of(GOAL, spec=self_hosted)
    assert decide(state, NOW) == StartIteration(iteration=1)
    state = state_of(GOAL, IterationStarted(iteration=1), said("Done."), spec=self_hosted)
    # No workspace of keel's: nothing to hand off, no test files to guard.
    assert "handoff" not in brief_of(
        state_of(GOAL, IterationStarted(iteration=1), spec=self_hosted)
    )
    assert decide(state, NOW) == Complete(reason="the model ended its turn")


def test_an_iteration_that_started_with_no_test_files_has_none_to_check() -> None:
    bare = IterationStarted(iteration=1, handoff=[HandoffFile(path="PLAN.md")])
    state = state_of(GOAL, bare, said("Done."), spec=spec())
    assert decide(state, NOW) == Complete(reason="the model ended its turn")


def test_no_model_can_call_the_harness_s_own_tools_even_when_its_agent_names_them() -> None:
    spec = AgentSpec(tools=["bash", "restore_files", "workspace_files"])
    uses = [
        ToolUseBlock(call_id="c1", name="restore_files", input={"files": []}),
        ToolUseBlock(call_id="c2", name="workspace_files", input={}),
    ]
    events = tool_requests(uses, SessionState(session_id="s", spec=spec))
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [(r.call_id, r.is_error) for r in results] == [("c1", True), ("c2", True)]
    assert all("unknown tool" in r.output for r in results)


# -- an iteration's start fits in one event -----------------------------------------------------


def test_a_start_that_fits_is_recorded_as_read() -> None:
    start = started(2)
    assert fitted(start) == start


def test_a_start_too_big_drops_protected_bytes_largest_first_then_halves_handoff_text() -> None:
    big = ProtectedFile(path="tests/test_big.py", digest="big", content=b"x" * 150_000)
    small = ProtectedFile(path="tests/test_small.py", digest="small", content=b"y" * 1000)
    start = IterationStarted(
        iteration=2, handoff=[HandoffFile(path="PLAN.md", text="p" * 1000)], protected=[big, small]
    )
    fit = fitted(start, limit=100_000)
    assert fit is not None and len(encode_event(fit)) <= 100_000
    assert [(f.path, f.content is None) for f in fit.protected] == [
        ("tests/test_big.py", True),  # dropped: guarded by its digest, not restorable
        ("tests/test_small.py", False),
    ]
    assert fit.handoff == start.handoff
    long_plan = IterationStarted(
        iteration=2, handoff=[HandoffFile(path="PLAN.md", text="p" * 80_000, size=80_000)]
    )
    fit = fitted(long_plan, limit=50_000)
    assert fit is not None and len(encode_event(fit)) <= 50_000
    (plan,) = fit.handoff
    assert plan.truncated and plan.text == "p" * 40_000 and plan.size == 80_000


def test_a_start_whose_listing_alone_is_too_big_does_not_fit() -> None:
    many = [ProtectedFile(path=f"tests/test_{i}.py", digest="d" * 64) for i in range(3000)]
    assert fitted(IterationStarted(iteration=1, protected=many)) is None
