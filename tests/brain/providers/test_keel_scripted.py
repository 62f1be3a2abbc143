"""The rules of `keel-scripted`, one by one, and the rubric grader: pure, no I/O."""

from __future__ import annotations

import pytest

from brain.context import ChatMessage, Context
from brain.providers import (
    Grading,
    KeelScriptedProvider,
    ModelRequest,
    Price,
    Providers,
    price_for,
    rubric_satisfied,
)
from schemas import (
    ContentBlock,
    ModelResponse,
    ModelSpec,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)

SPEC = ModelSpec(provider="keel-scripted", name="keel-scripted")


def user(*content: ContentBlock) -> ChatMessage:
    return ChatMessage(role="user", content=list(content))


def assistant(*content: ContentBlock) -> ChatMessage:
    return ChatMessage(role="assistant", content=list(content))


async def ask(
    *messages: ChatMessage,
    session_id: str = "ses_k",
    turn: int = 0,
    spec: ModelSpec = SPEC,
    deltas: list[str] | None = None,
) -> ModelResponse:
    request = ModelRequest(
        session_id=session_id,
        model=spec,
        context=Context(system="Be brief.", messages=list(messages)),
        turn=turn,
    )
    return await KeelScriptedProvider().complete(
        request, on_delta=None if deltas is None else deltas.append
    )


async def said(text: str, turn: int = 0) -> ModelResponse:
    return await ask(user(TextBlock(text=text)), turn=turn)


async def test_any_other_message_is_echoed_whole() -> None:
    response = await said("Hello there.\nSecond line.")
    assert response.content == [TextBlock(text="echo: Hello there.\nSecond line.")]
    assert response.stop_reason == "end_turn"
    assert response.model == "keel-scripted"


async def test_the_last_text_block_of_the_last_user_message_is_the_one_read() -> None:
    response = await ask(
        user(TextBlock(text="/tool bash")),
        assistant(TextBlock(text="echo: /tool bash")),
        user(TextBlock(text="first"), TextBlock(text="ünïcødé ✓ 日本語")),
    )
    assert response.content == [TextBlock(text="echo: ünïcødé ✓ 日本語")]


async def test_a_tool_command_asks_for_one_call_with_its_json_input() -> None:
    response = await said('/tool write_file {"path": "a.txt", "content": "héllo ✓"}', turn=3)
    assert response.content == [
        ToolUseBlock(
            call_id="ses_k:t3:0", name="write_file", input={"path": "a.txt", "content": "héllo ✓"}
        )
    ]
    assert response.stop_reason == "tool_use"


async def test_a_task_from_another_thread_is_read_without_its_header() -> None:
    task = '[message from coordinator]\n/tool bash {"command": "ls"}\nList the workspace.'
    response = await said(task)
    assert response.content == [
        ToolUseBlock(call_id="ses_k:t0:0", name="bash", input={"command": "ls"})
    ]


async def test_a_tool_command_without_json_has_an_empty_input() -> None:
    for text in ("/tool list_files", "  /tool list_files  \n"):
        response = await said(text)
        assert response.content == [ToolUseBlock(call_id="ses_k:t0:0", name="list_files")]


async def test_only_the_first_line_is_the_command() -> None:
    response = await said('/tool bash {"command": "ls"}\nand tell me what you see')
    assert response.content == [
        ToolUseBlock(call_id="ses_k:t0:0", name="bash", input={"command": "ls"})
    ]
    # A command on a later line is just text.
    later = await said('look:\n/tool bash {"command": "ls"}')
    assert later.content == [TextBlock(text='echo: look:\n/tool bash {"command": "ls"}')]


async def test_call_ids_come_from_the_session_and_the_turn() -> None:
    first = await said('/tool bash {"command": "ls"}', turn=1)
    assert await said('/tool bash {"command": "ls"}', turn=1) == first  # a replay, the same
    [again] = (await said('/tool bash {"command": "ls"}', turn=2)).content
    [other] = (await ask(user(TextBlock(text="/tool bash")), session_id="ses_z", turn=1)).content
    assert isinstance(again, ToolUseBlock) and again.call_id == "ses_k:t2:0"
    assert isinstance(other, ToolUseBlock) and other.call_id == "ses_z:t1:0"


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("/tool bash {command: ls}", "/tool bash: the input is not valid JSON ("),
        ('/tool bash {"command": "ls"} extra', "/tool bash: the input is not valid JSON ("),
        ('/tool bash ["ls"]', "/tool bash: the input must be a JSON object"),
        ("/tool bash " + "[" * 5000, "/tool bash: the input "),
        ("/tool bash " + '{"a":' * 80 + "1" + "}" * 80, "/tool bash: the input nests deeper"),
        ("/tool", "/tool needs a tool name: /tool NAME {json}"),
    ],
)
async def test_a_malformed_tool_command_gets_a_reply_saying_so(text: str, reply: str) -> None:
    response = await said(text)
    [block] = response.content
    assert isinstance(block, TextBlock) and block.text.startswith(reply), block
    assert response.stop_reason == "end_turn"


async def test_a_word_that_only_starts_like_the_command_is_echoed() -> None:
    response = await said("/toolbox open")
    assert response.content == [TextBlock(text="echo: /toolbox open")]


async def test_tool_results_are_reported_by_the_name_of_their_call() -> None:
    response = await ask(
        user(TextBlock(text="/tool bash")),
        assistant(
            ToolUseBlock(call_id="c1", name="bash", input={"command": "ls"}),
            ToolUseBlock(call_id="c2", name="read_file", input={"path": "x"}),
        ),
        user(
            ToolResultBlock(call_id="c1", output="a.txt\nb.txt\n"),
            ToolResultBlock(call_id="c2", output="no such file: x", is_error=True),
            TextBlock(text="and then?"),
        ),
    )
    assert response.content == [
        TextBlock(text="bash returned: a.txt\nb.txt\n"),
        TextBlock(text="read_file returned: no such file: x"),
    ]
    assert response.stop_reason == "end_turn"


@pytest.mark.parametrize(
    "output", ["the approval was denied", "the policy denies bash", "the approval was denied: no"]
)
async def test_a_refused_call_is_reported_as_denied(output: str) -> None:
    response = await ask(
        assistant(ToolUseBlock(call_id="c1", name="bash")),
        user(ToolResultBlock(call_id="c1", output=output, is_error=True)),
    )
    assert response.content == [TextBlock(text=f"bash was denied: {output}")]


async def test_a_tool_failing_with_permission_denied_is_not_a_refusal() -> None:
    response = await ask(
        assistant(ToolUseBlock(call_id="c1", name="bash")),
        user(ToolResultBlock(call_id="c1", output="ls: permission denied", is_error=True)),
        user(ToolResultBlock(call_id="c2", output="the approval was denied")),
    )
    # Only the last user message counts, and an output that is not an error is no refusal.
    assert response.content == [TextBlock(text="c2 returned: the approval was denied")]
    failed = await ask(
        assistant(ToolUseBlock(call_id="c1", name="bash")),
        user(ToolResultBlock(call_id="c1", output="ls: permission denied", is_error=True)),
    )
    assert failed.content == [TextBlock(text="bash returned: ls: permission denied")]


async def test_an_empty_conversation_is_echoed_empty() -> None:
    assert (await ask()).content == [TextBlock(text="echo: ")]
    assert (await ask(user())).content == [TextBlock(text="echo: ")]


async def test_text_streams_word_by_word_and_joins_back_exactly() -> None:
    deltas: list[str] = []
    response = await ask(user(TextBlock(text="  two  words\nü ✓ ")), deltas=deltas)
    assert deltas == ["echo:   ", "two  ", "words\n", "ü ", "✓ "]
    assert "".join(deltas) == "echo:   two  words\nü ✓ "
    assert [b.text for b in response.content if isinstance(b, TextBlock)] == ["".join(deltas)]
    calls: list[str] = []
    await ask(user(TextBlock(text="/tool bash")), deltas=calls)
    assert calls == []


async def test_usage_is_small_deterministic_and_never_zero() -> None:
    response = await said("12345678")
    # In: "Be brief." + "12345678" (17 characters); out: "echo: 12345678" (14).
    assert response.usage == Usage(input_tokens=17 // 4 + 1, output_tokens=14 // 4 + 1)
    call = await said('/tool bash {"command":"ls"}')
    assert call.usage.output_tokens == len('bash {"command":"ls"}') // 4 + 1
    assert call.cost_usd == 0.0


async def test_it_is_free_unless_the_options_set_a_price() -> None:
    assert price_for(SPEC) == Price(input=0.0, output=0.0, cache_read=0.0, cache_write=0.0)
    priced = ModelSpec(
        provider="keel-scripted",
        name="keel-scripted",
        options={"usd_per_mtok_input": 1_000_000.0, "usd_per_mtok_output": 2_000_000.0},
    )
    response = await ask(user(TextBlock(text="hi")), spec=priced)
    usage = response.usage
    assert response.cost_usd == pytest.approx(usage.input_tokens + 2 * usage.output_tokens)


def test_the_registry_serves_it_beside_the_exact_script_player() -> None:
    providers = Providers(environ={})
    assert providers.provider_for(SPEC) is providers.keel_scripted
    assert providers.provider_for(ModelSpec(provider="scripted")) is providers.scripted


@pytest.mark.parametrize(
    ("rubric", "message", "satisfied", "explanation"),
    [
        (
            "Says `PASS` and names `add()`.",
            "PASS: add() works",
            True,
            "the last message contains `PASS`, `add()`",
        ),
        (
            "Says `PASS`, names `add()` and `sub()`; `PASS` once.",
            "PASS only",
            False,
            "the last message lacks `add()`, `sub()`",
        ),
        ("Names `日本`.", "日本語です", True, "the last message contains `日本`"),
        ("Says `pass`.", "PASS", False, "the last message lacks `pass`"),
        (
            "Anything sensible.",
            "",
            True,
            "the rubric names no backquoted token, so any message satisfies it",
        ),
    ],
)
def test_a_rubric_is_satisfied_by_every_backquoted_token(
    rubric: str, message: str, satisfied: bool, explanation: str
) -> None:
    assert rubric_satisfied(rubric, message) == (satisfied, explanation)


@pytest.mark.parametrize(
    ("last_message", "answer"),
    [
        ("the `moon` rises", "SATISFIED\nthe last message contains `moon`"),
        ("no such thing", "NEEDS_REVISION\nthe last message lacks `moon`"),
    ],
)
async def test_as_a_grader_it_answers_the_verdict_first_then_why(
    last_message: str, answer: str
) -> None:
    request = ModelRequest(
        session_id="ses_k",
        model=SPEC,
        context=Context(system="You grade.", messages=[user(TextBlock(text="grade it"))]),
        grading=Grading(rubric="Mentions the `moon`.", last_message=last_message),
    )
    deltas: list[str] = []
    response = await KeelScriptedProvider().complete(request, on_delta=deltas.append)
    assert response.content == [TextBlock(text=answer)]
    assert response.stop_reason == "end_turn" and response.usage.output_tokens > 0
