"""Model providers behind one interface, chosen by the session's `ModelSpec.provider`.

So far `scripted` (deterministic, for tests, drills and the demo); `anthropic` and `openai`
arrive with the rest of the brain issue.
"""

from brain.providers._base import ModelProvider, ModelRequest, ProviderError
from brain.providers._scripted import ScriptedProvider, ScriptTurn

__all__ = ["ModelProvider", "ModelRequest", "ProviderError", "ScriptTurn", "ScriptedProvider"]
