"""Conversation content: assistant blocks, token usage, blob references."""

from __future__ import annotations

from typing import Literal

import msgspec


class BlobRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A payload stored once, outside the log, addressed by its sha256 digest.

    The event keeps the reference and a short preview, so a log stays O(events).
    """

    digest: str
    size: int
    preview: str = ""
    media_type: str = "text/plain"


class TextBlock(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="kind", tag="text"
):
    text: str


class ToolUseBlock(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="kind", tag="tool_use"
):
    call_id: str
    name: str
    input: dict[str, object] = {}


class ToolResultBlock(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag_field="kind",
    tag="tool_result",
):
    """A tool's outcome as the model sees it (output may be a preview of a blob)."""

    call_id: str
    output: str = ""
    blob: BlobRef | None = None
    is_error: bool = False


AssistantBlock = TextBlock | ToolUseBlock
ContentBlock = TextBlock | ToolUseBlock | ToolResultBlock

StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal", "error"]


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )
