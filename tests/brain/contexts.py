"""The contexts a brain sent, and the proof that a replay of the log rebuilds each of them.

`RecordingProviders` keeps every request a brain sends to a model. `assert_contexts_replay`
pairs the worker's requests with the responses in the log (the i-th with the i-th: a run
without crashes or conflicts) and the summary requests with the `context.compacted` they
made, and checks that folding the log up to where each was sent builds the same context.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import msgspec

from brain._compactor import summary_context
from brain.compaction import estimate_tokens
from brain.context import Context, build_context
from brain.fold import fold, initial_state
from brain.providers import ModelProvider, ModelRequest, Providers
from schemas import (
    ContextCompacted,
    ModelResponse,
    ModelSpec,
    Recorded,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)


class SentRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A request as sent, its context kept by digest (a long session sends thousands)."""

    summarizing: bool
    grading: bool
    context_digest: bytes
    context_tokens: int


def context_digest(context: Context) -> bytes:
    return hashlib.sha256(msgspec.msgpack.encode(context)).digest()


class _Recording:
    def __init__(self, provider: ModelProvider, requests: list[SentRequest]) -> None:
        self.provider = provider
        self.requests = requests

    async def complete(
        self, request: ModelRequest, on_delta: Callable[[str], None] | None = None
    ) -> ModelResponse:
        self.requests.append(
            SentRequest(
                summarizing=request.summarizing,
                grading=request.grading is not None,
                context_digest=context_digest(request.context),
                context_tokens=context_tokens(request.context),
            )
        )
        return await self.provider.complete(request, on_delta)


class RecordingProviders(Providers):
    """The usual providers, each keeping the requests it is sent in `requests`."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[SentRequest] = []

    def provider_for(self, spec: ModelSpec) -> ModelProvider:
        return _Recording(super().provider_for(spec), self.requests)


def context_tokens(context: Context) -> int:
    """The estimate, by the brain's own measure, of a context as sent."""
    total = estimate_tokens(context.system)
    for message in context.messages:
        for block in message.content:
            match block:
                case TextBlock(text=text):
                    total += estimate_tokens(text)
                case ToolUseBlock(name=name, input=arguments):
                    total += estimate_tokens(name) + estimate_tokens(str(arguments))
                case ToolResultBlock(output=output):
                    total += estimate_tokens(output)
    return total


def assert_contexts_replay(log: Sequence[Recorded], requests: Sequence[SentRequest]) -> int:
    """Each context sent equals the one a replay builds where it was sent; returns how many
    were compared."""
    sent = [request for request in requests if not request.grading]
    worker = [request for request in sent if not request.summarizing]
    summaries = [request for request in sent if request.summarizing]
    responses = [r for r in log if isinstance(r.event, ModelResponse)]
    summarized = [
        r for r in log if isinstance(r.event, ContextCompacted) and r.event.strategy == "summary"
    ]
    assert len(worker) == len(responses), (len(worker), len(responses))
    assert len(summaries) == len(summarized), (len(summaries), len(summarized))
    wanted: dict[int, list[tuple[str, bytes, int]]] = {}
    for request, recorded in zip(worker, responses, strict=True):
        assert isinstance(recorded.event, ModelResponse)
        shown = recorded.event.context_seq
        wanted.setdefault(shown, []).append(("model call", request.context_digest, 0))
    for request, recorded in zip(summaries, summarized, strict=True):
        assert isinstance(recorded.event, ContextCompacted)
        up_to = recorded.event.up_to_seq
        wanted.setdefault(recorded.seq - 1, []).append(("summary", request.context_digest, up_to))
    state = initial_state("replayed")  # the session's id is in no context
    compared = 0
    for recorded in log:
        for kind, digest, up_to in wanted.get(state.seq, []):
            if kind == "model call":
                rebuilt = build_context(state)
            else:
                rebuilt = summary_context(state, up_to)
            assert context_digest(rebuilt) == digest, (
                f"the {kind} sent after seq {state.seq} differs"
            )
            compared += 1
        fold(state, recorded)
    return compared
