"""What the HTTP providers share: call ids, API keys, error wording, tool input parsing."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Generic, Protocol, TypeVar

from brain.providers._base import ProviderError
from schemas import MAX_JSON_DEPTH, ModelSpec, is_valid_id, nesting_depth, new_id

# Statuses worth another try: a timeout, a conflict, rate limits and every server error
# (Anthropic's 529 "overloaded" included). 400, 401, 403, 404, 413, 422 will fail again.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_STATUS_WORDS = {
    400: "bad request",
    401: "unauthorized",
    402: "payment required",
    403: "forbidden",
    404: "not found",
    408: "request timeout",
    409: "conflict",
    413: "request too large",
    422: "unprocessable request",
    429: "rate limited",
    500: "server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
    529: "overloaded",
}
# The ids we send back must suit every API: Anthropic accepts [A-Za-z0-9_-] only, OpenAI at
# most 40 characters.
_WIRE_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_MIN_PROVIDER_ID_LENGTH = 16


def response_call_id(provider_id: str | None, taken: set[str]) -> str:
    """The call id a response's tool call is recorded under.

    Hands dedupe executions by call_id and keep outcomes: a call that reuses an id ever seen
    in the session would silently get the earlier call's result back instead of running. The
    hosted APIs mint long random ids (`toolu_...`, `call_...`), unique in practice; local
    servers (llama.cpp, Ollama, some vLLM parsers) return counters like `call_0` or `0`,
    empty ids, or characters our ids do not allow, and those repeat from one response to the
    next. So a provider's id is kept only when it is a valid keel id and long enough (16+
    characters) to be random, and not already used in this response; any other gets a fresh
    time-ordered random id.
    """
    if (
        provider_id
        and len(provider_id) >= _MIN_PROVIDER_ID_LENGTH
        and is_valid_id(provider_id)
        and provider_id not in taken
    ):
        call_id = provider_id
    else:
        call_id = new_id("call")
    taken.add(call_id)
    return call_id


def wire_call_id(call_id: str) -> str:
    """The id a recorded call is sent back to a provider under (tool_use and its result alike).

    Ids minted elsewhere (the scripted model's `ses_x:t0:0`, a long id from another provider
    after a model switch) may not suit this API; those are replaced by a digest, the same on
    every turn so the pairing and any prompt cache hold.
    """
    if _WIRE_ID.match(call_id):
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:32]


class _Closeable(Protocol):
    async def close(self) -> None: ...


Client = TypeVar("Client", bound=_Closeable)


class SdkClients(Generic[Client]):
    """SDK clients per (base_url, key), made on first use and closed together: each holds a
    connection pool bound to the event loop that first used it."""

    def __init__(self, make: Callable[[str | None, str], Client]) -> None:
        self._make = make
        self._clients: dict[tuple[str | None, str], Client] = {}

    def get(self, base_url: str | None, key: str) -> Client:
        client = self._clients.get((base_url, key))
        if client is None:
            client = self._clients[base_url, key] = self._make(base_url, key)
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


def unreachable(provider: str, base_url: object, exc: BaseException) -> ProviderError:
    """The SDK could not connect: say where, and why if the cause says."""
    cause = exc.__cause__
    reason = explain(type(cause).__name__, str(cause)) if cause else ""
    return ProviderError(f"{provider}: cannot reach {base_url}{reason}", retryable=True)


def api_key(provider: str, model: ModelSpec, default_env: str, environ: Mapping[str, str]) -> str:
    """The key from `model.api_key_env`, which must be set; else from `options["api_key_env"]`
    or `default_env`, where a local server (a `base_url`) with no key gets a placeholder."""
    if model.api_key_env is not None:
        named = environ.get(model.api_key_env)
        if named:
            return named
        raise ProviderError(
            f"{provider}: no API key: {model.api_key_env} is not set", retryable=False
        )
    env = model.options.get("api_key_env", default_env)
    if not isinstance(env, str) or not env:
        raise ProviderError(
            f"{provider}: options.api_key_env must name an environment variable, not {env!r}",
            retryable=False,
        )
    key = environ.get(env)
    if key:
        return key
    if model.base_url:
        return "none"  # local servers (vLLM, Ollama, llama.cpp) ask for no key
    raise ProviderError(f"{provider}: no API key: {env} is not set", retryable=False)


def status_error(
    provider: str,
    status: int,
    kind: str | None,
    detail: str | None,
    headers: Mapping[str, str],
) -> ProviderError:
    """An error response, e.g. `anthropic: 429 rate limited (rate_limit_error: ...)`."""
    words = _STATUS_WORDS.get(status, "server error" if status >= 500 else "error")
    return ProviderError(
        f"{provider}: {status} {words}{explain(kind, detail)}",
        retryable=status in _RETRYABLE_STATUSES or status >= 500,
        retry_after_s=retry_after_s(headers),
    )


def explain(kind: str | None, detail: str | None) -> str:
    detail = " ".join((detail or "").split())[:300]
    if kind and detail:
        return f" ({kind}: {detail})"
    if kind or detail:
        return f" ({kind or detail})"
    return ""


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """How long the server asked us to wait: `retry-after-ms`, or `retry-after` in seconds or
    as an HTTP date."""
    try:
        millis = float(headers.get("retry-after-ms", ""))
    except ValueError:
        pass
    else:
        return max(millis / 1000, 0.0)
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def malformed(provider: str, what: str) -> ProviderError:
    # A garbled or cut-off response says nothing about the next one: worth another try.
    return ProviderError(f"{provider}: malformed response: {what}", retryable=True)


def tool_input(provider: str, name: str, arguments: str) -> dict[str, object]:
    """A tool call's input from its streamed JSON text; bad JSON is a malformed response."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError) as exc:
        raise malformed(
            provider, f"the input of tool call {name!r} is not valid JSON ({exc})"
        ) from exc
    if not isinstance(value, dict):
        raise malformed(provider, f"the input of tool call {name!r} is not a JSON object")
    return checked_tool_input(provider, name, value)


def checked_tool_input(provider: str, name: str, value: dict[str, object]) -> dict[str, object]:
    """A tool input the log can keep: one nested too deeply could not be read back."""
    if nesting_depth(value) > MAX_JSON_DEPTH:
        raise malformed(
            provider, f"the input of tool call {name!r} nests deeper than {MAX_JSON_DEPTH} levels"
        )
    return value


def elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
