"""An agent's `model` id, routed to a provider keel can drive by the operator's models file."""

from __future__ import annotations

from gateway.managed._common import refuse
from schemas import ModelSpec


def model_spec(model_id: str) -> ModelSpec:
    if model_id == "keel-scripted":
        return ModelSpec(provider="keel-scripted", name=model_id)
    if model_id.startswith("claude-"):
        return ModelSpec(provider="anthropic", name=model_id)
    raise refuse("model", f"no route for model {model_id!r}")


def check_model(model_id: str) -> None:
    model_spec(model_id)
