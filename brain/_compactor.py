"""Performing a compaction `decide` asked for: the handoff or the summary, then
`context.compacted`.

A handoff is built from the state alone (brain/compaction.py), so it costs no request. A
summary is a model request with its own prompt, retried like any other, whose usage and cost
the event carries: the session's budgets count it. When the summary cannot be had (the
provider fails for good), the handoff stands in: the session carries on under its window.

A brain that dies after the summary came back and before the event is durable leaves no
trace: the next brain decides the same compaction and asks again (the lost request is spend
the log never saw, as with a model call a brain dies in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from brain._leased_log import LeasedLog
from brain.compaction import handoff_compaction, tokens_after
from brain.context import ChatMessage, Context, build_context
from brain.decide import Compact
from brain.providers import ModelProvider, ModelRequest, ProviderError, complete_with_retries
from brain.settings import BrainSettings
from brain.state import SessionState
from schemas import ContextCompacted, Crashpoints, ModelSpec, TextBlock

SUMMARY_PROMPT: Final = (
    "You are compacting the conversation of a long-running agent so that it can go on "
    "within its context window. Write a summary the agent will work from: the task, what "
    "has been done and learned, what is left to do, and the names of files, commands and "
    "errors that matter. Do not call tools."
)
SUMMARY_ASK: Final = "Summarize the conversation so far, as the instructions say."


class Compactor:
    def __init__(
        self,
        log: LeasedLog,
        providers: Callable[[ModelSpec], ModelProvider],
        settings: BrainSettings,
        crash: Crashpoints,
    ) -> None:
        self.log: Final = log
        self.providers: Final = providers
        self.settings: Final = settings
        self.crash: Final = crash

    async def compact(self, action: Compact) -> None:
        state = self.log.state
        event = (
            await self._summary(state, action)
            if action.strategy == "summary"
            else handoff_compaction(state, action.up_to_seq)
        )
        await self.log.commit([event])
        self.crash.reach("after_context_compacted")

    async def _summary(self, state: SessionState, action: Compact) -> ContextCompacted:
        spec = self.log.spec
        model = spec.context.summary_model or spec.model
        request = ModelRequest(
            session_id=self.log.session_id,
            model=model,
            context=summary_context(state, action.up_to_seq),
            turn=state.turns,
            summarizing=True,
        )
        try:
            response = await complete_with_retries(
                self.providers(model), request, None, self.settings.model_retry
            )
        except ProviderError:
            return handoff_compaction(state, action.up_to_seq)
        self.crash.reach("after_compaction_summary")
        summary = "\n".join(b.text for b in response.content if isinstance(b, TextBlock))
        return ContextCompacted(
            up_to_seq=action.up_to_seq,
            summary=summary,
            tokens_before=action.tokens_before,
            tokens_after=tokens_after(state, action.up_to_seq, summary),
            strategy="summary",
            usage=response.usage,
            cost_usd=response.cost_usd,
            model=response.model or model.name,
        )


def summary_context(state: SessionState, up_to_seq: int) -> Context:
    """The conversation to summarize (through `up_to_seq`, after any earlier summary), under
    the summary's own prompt, ending with the ask."""
    through = msgspec.structs.replace(
        state, messages=[m for m in state.messages if m.seq <= up_to_seq]
    )
    shown = build_context(through)
    ask = TextBlock(text=SUMMARY_ASK)
    messages = list(shown.messages)
    if messages and messages[-1].role == "user":
        last = messages.pop()
        messages.append(ChatMessage(role="user", content=[*last.content, ask]))
    else:
        messages.append(ChatMessage(role="user", content=[ask]))
    system = f"{SUMMARY_PROMPT}\n\n{shown.system}".strip()
    return Context(system=system, messages=messages)
