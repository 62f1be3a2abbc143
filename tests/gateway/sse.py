"""Reading a text/event-stream response the way a browser's EventSource does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2


async def sse_events(response: httpx2.Response) -> AsyncIterator[dict[str, str]]:
    """Each event's fields (comments and the `retry` hint skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if fields and "retry" not in fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def sse(response: httpx2.Response, limit: int | None = None) -> list[dict[str, str]]:
    """The events of a stream, until it ends or `limit` of them came."""
    events: list[dict[str, str]] = []
    async for event in sse_events(response):
        events.append(event)
        if len(events) == limit:
            break
    return events
