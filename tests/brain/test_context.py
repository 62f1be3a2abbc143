"""The conversation sent to a model is always one a provider accepts, whatever the log holds."""

from __future__ import annotations

import itertools

from hypothesis import given, settings

from brain import initial_state, replay
from brain.context import NO_RESULT, Context, build_context
from schemas import (
    AgentSpec,
    BlobRef,
    ContextCompacted,
    Event,
    JudgeVerdict,
    ModelResponse,
    SessionCreated,
    TextBlock,
    ToolRequested,
    ToolResult,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from tests.brain.test_fold import build_log, record, steps


def context_of(*events: Event) -> Context:
    log = record([SessionCreated(spec=AgentSpec(system_prompt="Be careful.")), *events])
    return build_context(replay(log, initial_state("ses_c")))


def acceptable(context: Context) -> None:
    """What every provider requires of a conversation."""
    messages = context.messages
    assert not messages or messages[0].role == "user"
    for before, after in itertools.pairwise(messages):
        assert before.role != after.role
    for index, message in enumerate(messages):
        assert message.content
        uses = [b.call_id for b in message.content if isinstance(b, ToolUseBlock)]
        results = [b.call_id for b in message.content if isinstance(b, ToolResultBlock)]
        if message.role == "assistant":
            assert not results
            if uses:
                following = messages[index + 1].content
                answered = [b.call_id for b in following if isinstance(b, ToolResultBlock)]
                assert answered == uses
        else:
            previous = messages[index - 1].content if index else []
            asked = [b.call_id for b in previous if isinstance(b, ToolUseBlock)]
            assert results == asked[: len(results)] and len(results) in (0, len(asked))


def call(call_id: str) -> ModelResponse:
    return ModelResponse(
        content=[ToolUseBlock(call_id=call_id, name="bash", input={"command": "ls"})],
        stop_reason="tool_use",
    )


def test_tool_uses_are_paired_with_their_results_and_blobs_are_referenced() -> None:
    blob = BlobRef(digest="ab" * 32, size=99_000, preview="line 1")
    context = context_of(
        UserMessage(text="list"),
        call("c1"),
        ToolRequested(call_id="c1", name="bash"),
        ToolResult(call_id="c1", output="line 1", blob=blob),
    )
    assert context.system == "Be careful."
    [_, _, results] = context.messages
    [result] = results.content
    assert isinstance(result, ToolResultBlock) and result.call_id == "c1"
    assert f"blob {'ab' * 32}" in result.output and "99000 bytes" in result.output
    acceptable(context)


def test_a_call_without_a_result_still_gets_one() -> None:
    context = context_of(UserMessage(text="go"), call("lost"))
    last = context.messages[-1]
    assert last.role == "user"
    assert last.content == [ToolResultBlock(call_id="lost", output=NO_RESULT, is_error=True)]
    acceptable(context)


def test_compaction_that_cuts_a_pair_leaves_no_orphan_result() -> None:
    context = context_of(
        UserMessage(text="go"),
        call("c1"),
        ToolRequested(call_id="c1", name="bash"),
        ContextCompacted(up_to_seq=3, summary="we listed files"),
        ToolResult(call_id="c1", output="a b c"),
        ModelResponse(content=[TextBlock(text="done")], stop_reason="end_turn"),
    )
    assert "we listed files" in context.system
    assert context.messages[0].content == [TextBlock(text="(continue)")]
    acceptable(context)


def test_a_failed_completion_check_is_shown_to_the_model() -> None:
    end = ModelResponse(content=[TextBlock(text="done")], stop_reason="end_turn")
    context = context_of(
        UserMessage(text="fix the tests"),
        end,
        JudgeVerdict(passed=False, judge="command", detail="2 tests fail"),
        end,
    )
    roles = [m.role for m in context.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert "2 tests fail" in context.messages[2].content[0].text  # type: ignore[union-attr]
    acceptable(context)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_any_valid_log_gives_an_acceptable_conversation(
    plan: list[tuple[str, int, str, dict[str, object]]],
) -> None:
    acceptable(build_context(replay(record(build_log(plan)), initial_state("ses_p"))))
