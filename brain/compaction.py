"""Keeping the context under the model's window: what the fold and `decide` know of it.

All of it is pure and reads only the state, so a replay of the log decides the same:

- `estimate_tokens`: what a block adds to the context; the fold keeps `context_tokens`, the
  size of the next request, from the last response's reported input tokens plus the
  estimate of what came after it;
- `reduce_old_outputs`: the fold shows tool outputs older than the last `keep_turns` turns
  as previews with a reference to the full output, so the state itself stays bounded;
- `compaction_due`: `decide` compacts before a model call whose context would pass
  `compact_at` of the window, keeping the last `keep_turns` turns;
- `build_handoff`: the structured handoff (no model call) that replaces the conversation
  before the cut: the task, then a bounded list of what was done.
"""

from __future__ import annotations

from typing import Final

import msgspec

from brain.state import Message, SessionState
from schemas import (
    AgentSpec,
    ContentBlock,
    ContextCompacted,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)

# Windows of known models, in tokens, by model name (a prefix names a family).
MODEL_WINDOWS: Final[dict[str, int]] = {
    "claude-": 200_000,
    "gpt-4.1": 1_000_000,
    "gpt-4o": 128_000,
    "gpt-5": 400_000,
    "o3": 200_000,
    "o4-mini": 200_000,
}
# A model the table does not know: a window every current model has.
DEFAULT_WINDOW: Final = 128_000

# A token is about four characters of English or code.
CHARS_PER_TOKEN: Final = 4
# What an older tool output is reduced to: its head, then where the rest is.
PREVIEW_CHARS: Final = 500
# A handoff keeps the task and this many lines of progress, each this long at most.
TASK_CHARS: Final = 2000
HANDOFF_LINES: Final = 60
LINE_CHARS: Final = 240

HANDOFF_TITLE: Final = "Handoff built from the session's log"
_PROGRESS: Final = "Progress (oldest first):\n"


def window_tokens(spec: AgentSpec) -> int:
    """The agent's own setting, else the longest known prefix of the model's name."""
    if spec.context.window_tokens is not None:
        return spec.context.window_tokens
    name = spec.model.name
    known = [prefix for prefix in MODEL_WINDOWS if name.startswith(prefix)]
    return MODEL_WINDOWS[max(known, key=len)] if known else DEFAULT_WINDOW


def compact_limit(spec: AgentSpec) -> int:
    """Past this many tokens, the next request is sent only after a compaction."""
    return int(window_tokens(spec) * spec.context.compact_at)


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def block_tokens(block: ContentBlock) -> int:
    match block:
        case TextBlock(text=text):
            return estimate_tokens(text)
        case ToolUseBlock(name=name, input=arguments):
            return estimate_tokens(name) + estimate_tokens(msgspec.json.encode(arguments).decode())
        case ToolResultBlock(output=output):
            return estimate_tokens(output) + 16  # and the reference a blob adds
    return 0


def context_tokens(state: SessionState) -> int:
    """The estimate of a whole context, for a state whose last request says nothing of it
    (after a compaction)."""
    return tokens_after(state, state.compacted_through, state.summary)


# -- older tool outputs ---------------------------------------------------------------------


def reduce_old_outputs(state: SessionState, keep_turns: int) -> int:
    """Reduce the tool outputs that the newest response left `keep_turns` turns behind;
    returns by how many tokens the context shrank.

    Called once per response, so only the user turn just before the `keep_turns`-th newest
    response is new to reduce: every older one was reduced by an earlier response."""
    index = _nth_newest_response(state.messages, keep_turns)
    saved = 0
    while index is not None and index > 0 and state.messages[index - 1].role == "user":
        index -= 1
        message = state.messages[index]
        for at, block in enumerate(message.content):
            if isinstance(block, ToolResultBlock):
                seq = message.block_seqs[at] if at < len(message.block_seqs) else message.seq
                reduced = reduced_output(block, seq)
                saved += block_tokens(block) - block_tokens(reduced)
                message.content[at] = reduced
    return saved


def reduced_output(block: ToolResultBlock, seq: int) -> ToolResultBlock:
    """The head of the output and where the whole of it is: the blob the hands kept, else
    the `tool.result` in the log."""
    if len(block.output) <= PREVIEW_CHARS + LINE_CHARS:
        return block
    where = "" if block.blob is not None else f"; the full output is tool.result seq {seq}"
    note = f"\n[older output reduced to a preview of {len(block.output)} chars{where}]"
    return msgspec.structs.replace(block, output=block.output[:PREVIEW_CHARS] + note)


def _nth_newest_response(messages: list[Message], n: int) -> int | None:
    seen = 0
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "assistant":
            seen += 1
            if seen == n:
                return index
    return None


# -- when to compact, and where to cut ------------------------------------------------------


def compaction_cut(state: SessionState) -> int | None:
    """The seq through which a compaction due now would replace the conversation; None when
    none is due or there is nothing to cut (the request then goes as it is).

    The last `keep_turns` turns are kept; when they alone are past the limit (a compaction
    kept them already), only the last turn is."""
    spec = state.spec
    if spec is None or state.context_tokens <= compact_limit(spec):
        return None
    for keep in dict.fromkeys((spec.context.keep_turns, 1)):
        index = _nth_newest_response(state.messages, keep)
        if index is not None and index > 0:
            cut = state.messages[index].seq - 1
            if cut > state.compacted_through:
                return cut
    return None


# -- the structured handoff -----------------------------------------------------------------


def handoff_compaction(state: SessionState, up_to_seq: int) -> ContextCompacted:
    """The `context.compacted` of a handoff through `up_to_seq`: all of it from the state."""
    summary = build_handoff(state, up_to_seq)
    return ContextCompacted(
        up_to_seq=up_to_seq,
        summary=summary,
        tokens_before=state.context_tokens,
        tokens_after=tokens_after(state, up_to_seq, summary),
        strategy="handoff",
    )


def build_handoff(state: SessionState, up_to_seq: int) -> str:
    """The handoff that replaces the conversation through `up_to_seq`: the task, what the
    previous compaction said, then a line for each thing done, newest kept; bounded
    whatever the history's length."""
    lines = _earlier_progress(state.summary)
    for message in state.messages:
        if message.seq > up_to_seq:
            break
        lines.extend(_progress(message))
    lines = lines[-HANDOFF_LINES:]
    task = _one_line(state.task, TASK_CHARS) or "(none given)"
    return (
        f"{HANDOFF_TITLE} (events 1..{up_to_seq}; the full record stays in the log).\n"
        f"Task: {task}\n{_PROGRESS}" + "".join(f"- {line}\n" for line in lines)
    )


def _earlier_progress(summary: str) -> list[str]:
    if not summary:
        return []
    if summary.startswith(HANDOFF_TITLE) and _PROGRESS in summary:
        done = summary.split(_PROGRESS, 1)[1]
        return [line[2:] for line in done.splitlines() if line.startswith("- ")]
    return [f"earlier summary: {_one_line(summary, 4 * LINE_CHARS)}"]


def _progress(message: Message) -> list[str]:
    lines = []
    for at, block in enumerate(message.content):
        seq = message.block_seqs[at] if at < len(message.block_seqs) else message.seq
        match block:
            case TextBlock(text=text):
                lines.append(f"{message.role} (seq {seq}): {_one_line(text, LINE_CHARS)}")
            case ToolUseBlock(call_id=call_id, name=name, input=arguments):
                shown = _one_line(msgspec.json.encode(arguments).decode(), LINE_CHARS // 2)
                lines.append(f"called {name} {shown} (call {call_id})")
            case ToolResultBlock(call_id=call_id, output=output, blob=blob, is_error=is_error):
                where = f"blob {blob.digest}" if blob is not None else f"tool.result seq {seq}"
                head = _one_line(output, LINE_CHARS // 2)
                outcome = "error" if is_error else "ok"
                lines.append(f"call {call_id} {outcome}: {head} (full output: {where})")
    return lines


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def tokens_after(state: SessionState, up_to_seq: int, summary: str) -> int:
    """The context's estimate once the conversation through `up_to_seq` is `summary`."""
    prompt = state.spec.system_prompt if state.spec is not None else ""
    return (
        estimate_tokens(prompt)
        + estimate_tokens(summary)
        + sum(
            block_tokens(block)
            for message in state.messages
            if message.seq > up_to_seq
            for block in message.content
        )
    )
