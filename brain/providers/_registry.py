"""Which provider serves a `ModelSpec`: chosen by `spec.provider`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from brain.providers._base import ModelProvider, ProviderError
from brain.providers._keel_scripted import KeelScriptedProvider
from brain.providers._scripted import ScriptedProvider
from schemas import ModelSpec

if TYPE_CHECKING:
    from brain.providers._anthropic import AnthropicProvider
    from brain.providers._openai import OpenAIProvider


class Providers:
    """One provider of each kind; the real ones keep an SDK client per (base_url, key).

    SDK clients hold connection pools bound to the event loop that used them first: make one
    `Providers` per loop (the process's, or a test's) and `aclose()` it with the loop.
    """

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        self.scripted = ScriptedProvider()
        self.keel_scripted = KeelScriptedProvider()
        self._environ = environ
        self._anthropic: AnthropicProvider | None = None
        self._openai: OpenAIProvider | None = None

    # The SDKs take about a second to import: only a brain that serves such a model pays
    # for it, so a brain restarted after a crash is back at work at once.
    @property
    def anthropic(self) -> AnthropicProvider:
        if self._anthropic is None:
            from brain.providers._anthropic import AnthropicProvider

            self._anthropic = AnthropicProvider(environ=self._environ)
        return self._anthropic

    @property
    def openai(self) -> OpenAIProvider:
        if self._openai is None:
            from brain.providers._openai import OpenAIProvider

            self._openai = OpenAIProvider(environ=self._environ)
        return self._openai

    def provider_for(self, spec: ModelSpec) -> ModelProvider:
        match spec.provider:
            case "scripted":
                return self.scripted
            case "keel-scripted":
                return self.keel_scripted
            case "anthropic":
                return self.anthropic
            case "openai":
                return self.openai
            case other:
                raise ProviderError(
                    f"unknown model provider {other!r} "
                    "(known: scripted, keel-scripted, anthropic, openai)",
                    retryable=False,
                )

    async def aclose(self) -> None:
        if self._anthropic is not None:
            await self._anthropic.aclose()
        if self._openai is not None:
            await self._openai.aclose()


_PROCESS = Providers()


def provider_for(spec: ModelSpec) -> ModelProvider:
    """The process-wide provider for `spec` (clients read keys from `os.environ`)."""
    return _PROCESS.provider_for(spec)
