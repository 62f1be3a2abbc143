"""Model providers behind one interface, chosen by the session's `ModelSpec.provider`.

- `scripted`: plays a script exactly, for tests, drills and the demo.
- `keel-scripted`: answers by rules (`/tool NAME {json}` calls a tool, results are reported,
  anything else echoed), for users' integration tests; as a grader (`ModelRequest.grading`) it
  is satisfied when the worker's last message has every backquoted token of the rubric.
- `anthropic`: the Messages API through the official SDK, streamed, with tools.
- `openai`: Chat Completions through the official SDK, streamed, with function tools; any
  compatible server (vLLM, Ollama, llama.cpp) through `ModelSpec.base_url`.

`provider_for(spec)` picks one (`Providers` when the clients' lifetime matters);
`complete_with_retries` wraps any of them in a per-attempt timeout and backoff
(`RetryPolicy`); `price_for` and `cost_usd` turn token usage into USD.

Every provider reports failure as one exception, `ProviderError`: `retryable` says whether
trying again may help, `retry_after_s` how long the provider asked us to wait. No SDK or HTTP
exception leaves this package. Tool call ids a provider returns are always valid keel ids,
unique for the life of the session (see `_common.response_call_id`).
"""

from typing import TYPE_CHECKING, Any

from brain.providers._base import (
    Grading,
    ModelProvider,
    ModelRequest,
    ProviderError,
    ToolDefinition,
)
from brain.providers._keel_scripted import KeelScriptedProvider, rubric_satisfied
from brain.providers._pricing import Price, cost_usd, price_for
from brain.providers._registry import Providers, provider_for
from brain.providers._retry import RetryPolicy, complete_with_retries
from brain.providers._scripted import ScriptedProvider, ScriptTurn

if TYPE_CHECKING:
    from brain.providers._anthropic import AnthropicProvider
    from brain.providers._openai import OpenAIProvider


def __getattr__(name: str) -> Any:
    """The SDK-backed providers are imported on first use (their SDKs are slow to load)."""
    if name == "AnthropicProvider":
        from brain.providers._anthropic import AnthropicProvider

        return AnthropicProvider
    if name == "OpenAIProvider":
        from brain.providers._openai import OpenAIProvider

        return OpenAIProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AnthropicProvider",
    "Grading",
    "KeelScriptedProvider",
    "ModelProvider",
    "ModelRequest",
    "OpenAIProvider",
    "Price",
    "ProviderError",
    "Providers",
    "RetryPolicy",
    "ScriptTurn",
    "ScriptedProvider",
    "ToolDefinition",
    "complete_with_retries",
    "cost_usd",
    "price_for",
    "provider_for",
    "rubric_satisfied",
]
