from __future__ import annotations

import pytest

from brain.providers import (
    AnthropicProvider,
    OpenAIProvider,
    ProviderError,
    Providers,
    ScriptedProvider,
    provider_for,
)
from schemas import ModelSpec


def test_the_provider_is_chosen_by_the_spec() -> None:
    assert isinstance(provider_for(ModelSpec()), ScriptedProvider)
    anthropic = provider_for(ModelSpec(provider="anthropic", name="claude-haiku-4-5"))
    assert isinstance(anthropic, AnthropicProvider)
    openai = provider_for(ModelSpec(provider="openai", name="gpt-4.1"))
    assert isinstance(openai, OpenAIProvider)
    # One of each for the process, so their SDK clients (and connections) are shared.
    assert provider_for(ModelSpec(provider="anthropic", name="claude-opus-4-6")) is anthropic
    assert provider_for(ModelSpec(provider="openai", base_url="http://gpu:8000/v1")) is openai


def test_an_unknown_provider_is_a_final_error() -> None:
    with pytest.raises(ProviderError) as caught:
        provider_for(ModelSpec(provider="gemini"))
    assert str(caught.value).startswith("unknown model provider 'gemini'")
    assert not caught.value.retryable


async def test_closing_drops_the_clients() -> None:
    providers = Providers(environ={})
    first = providers.openai.client_for("http://127.0.0.1:1/v1", "none")
    providers.anthropic.client_for("http://127.0.0.1:1", "none")
    await providers.aclose()
    assert providers.openai.client_for("http://127.0.0.1:1/v1", "none") is not first
    await providers.aclose()
