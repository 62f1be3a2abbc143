"""An agent's `model` id, routed to a provider keel can drive by the operator's models file
(`KEEL_MODELS_FILE`; `claude-*` goes to Anthropic and `keel-scripted` to keel's
deterministic model without one). The gateway reads the file once, at its first use."""

from __future__ import annotations

import functools

from gateway._settings import GatewaySettings
from gateway.managed._common import refuse
from schemas import (
    ModelRoutes,
    ModelSpec,
    UnknownModel,
    load_model_routes,
    resolve_model,
    settings_from_env,
)


@functools.cache
def _routes() -> ModelRoutes:
    return load_model_routes(settings_from_env(GatewaySettings).models_file)


def model_spec(model_id: str) -> ModelSpec:
    try:
        return resolve_model(model_id, _routes())
    except UnknownModel as exc:
        raise refuse("model", str(exc)) from exc


def check_model(model_id: str) -> None:
    model_spec(model_id)


def served_models_pattern() -> str:
    return _routes().id_pattern()
