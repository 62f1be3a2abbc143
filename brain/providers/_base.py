"""The provider interface: a built context in, one recorded model response out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from brain.context import Context
from schemas import ModelResponse, ModelSpec


class ProviderError(Exception):
    """The model could not answer; `retryable` says whether trying again may help.

    `retry_after_s` is how long the provider asked us to wait (a `retry-after` header), if it
    said.
    """

    def __init__(
        self, message: str, *, retryable: bool, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class ToolDefinition(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    input_schema: dict[str, object]


class Grading(msgspec.Struct, frozen=True, kw_only=True):
    """What a grader's request scores. A real model reads it in the request's prompt; a
    deterministic provider grades by these fields (`keel-scripted`: `rubric_satisfied`)."""

    rubric: str
    # The text of the worker's last message (its last response with text).
    last_message: str


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    model: ModelSpec
    context: Context
    tools: list[ToolDefinition] = []
    # How many responses the session has recorded: a deterministic provider's position.
    turn: int = 0
    # Set when the request asks a grader to evaluate the worker's work.
    grading: Grading | None = None
    # Set when the request asks for a summary of the conversation, to compact the context.
    summarizing: bool = False


class ModelProvider(Protocol):
    async def complete(
        self, request: ModelRequest, on_delta: Callable[[str], None] | None = None
    ) -> ModelResponse:
        """One response; streamed text goes to `on_delta` as it comes (never persisted)."""
        ...
