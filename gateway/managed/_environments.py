"""`/v1/environments`: where an agent's tools run. `cloud` is keel's own sandboxes (no
network, so only a `limited` config with nothing allowed); `self_hosted` is the user's own
worker, which takes the session's tool calls over `environments.work` and posts results,
with a key made by `POST /v1/environments/{id}/keys` (keel's extension: the SDK takes an
`environment_key` but has no call that makes one)."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request, Response

from gateway._access import QueryFirst, Tenant
from gateway._bodies import decode_body, decode_optional_body
from gateway._errors import ApiProblem
from gateway._services import Services
from gateway.managed._common import (
    ResourceQuery,
    answer,
    decode_stored,
    patched,
    refuse,
    resource_view,
    stored,
)
from gateway.managed._shapes import (
    Deleted,
    EnvironmentConfig,
    EnvironmentCreateParams,
    EnvironmentKey,
    EnvironmentKeyParams,
    EnvironmentParams,
)
from session_store import Resource

router = APIRouter(route_class=QueryFirst, tags=["managed agents"])

KIND: Final = "environment"
# keel's sandboxes as a cloud config: no network, nothing installed beyond the image.
_NO_NETWORK: Final = {
    "type": "limited",
    "allowed_hosts": [],
    "allow_mcp_servers": False,
    "allow_package_managers": False,
}
_NO_PACKAGES: Final = {
    "type": "packages",
    **{manager: [] for manager in ("apt", "cargo", "gem", "go", "npm", "pip")},
}


def environment_view(resource: Resource) -> dict[str, Any]:
    return resource_view(resource, KIND)


@router.post("/v1/environments", response_class=Response)
async def create_environment(tenant: Tenant, request: Request, services: Services) -> Response:
    """Create an environment (a `cloud` one when no config is given)."""
    params = await decode_body(request, EnvironmentCreateParams)
    body = _body(params, None)
    return answer(environment_view(await services.store.put_resource(tenant, KIND, stored(body))))


@router.get("/v1/environments/{environment_id}", response_class=Response)
async def retrieve_environment(environment_id: str, tenant: Tenant, services: Services) -> Response:
    return answer(environment_view(await services.store.get_resource(tenant, KIND, environment_id)))


@router.post("/v1/environments/{environment_id}", response_class=Response)
async def update_environment(
    environment_id: str, tenant: Tenant, request: Request, services: Services
) -> Response:
    """Change its name, config, description, metadata (a patch) or scope; sessions made
    before keep the config they were made with."""
    params = await decode_body(request, EnvironmentParams)
    current = await services.store.get_resource(tenant, KIND, environment_id)
    body = _body(params, environment_view(current))
    updated = await services.store.put_resource(
        tenant, KIND, stored(body), resource_id=environment_id
    )
    return answer(environment_view(updated))


@router.get("/v1/environments", response_class=Response)
async def list_environments(
    tenant: Tenant, services: Services, query: Annotated[ResourceQuery, Depends()]
) -> Response:
    """The tenant's environments, newest first."""
    return await query.answer(services.store, tenant, KIND, environment_view)


@router.post("/v1/environments/{environment_id}/archive", response_class=Response)
async def archive_environment(environment_id: str, tenant: Tenant, services: Services) -> Response:
    return answer(
        environment_view(await services.store.archive_resource(tenant, KIND, environment_id))
    )


@router.delete("/v1/environments/{environment_id}", response_class=Response)
async def delete_environment(environment_id: str, tenant: Tenant, services: Services) -> Response:
    await services.store.delete_resource(tenant, KIND, environment_id)
    return answer(Deleted(id=environment_id, type="environment_deleted"))


@router.post("/v1/environments/{environment_id}/keys", response_class=Response)
async def create_environment_key(
    environment_id: str, tenant: Tenant, request: Request, services: Services
) -> Response:
    """A key for the environment's self-hosted worker (keel's extension): it serves the
    environment's work queue and its sessions, nothing else. Shown this once."""
    params = await decode_optional_body(request, EnvironmentKeyParams)
    environment = await services.store.get_resource(tenant, KIND, environment_id)
    if decode_stored(environment.body)["config"]["type"] != "self_hosted":
        raise ApiProblem(
            409, f"environment {environment_id!r} is not self_hosted: it has no worker to key"
        )
    made = await services.store.create_environment_key(tenant, environment_id, params.name)
    return answer(
        EnvironmentKey(
            id=made.key_id, environment_id=made.environment_id, name=made.name, key=made.key
        )
    )


def _body(params: EnvironmentParams, current: dict[str, Any] | None) -> dict[str, Any]:
    base = current or {}
    config = base.get("config") if params.config is None else _config(params.config)
    return {
        "name": params.name if params.name is not None else base["name"],
        "config": config or _config(EnvironmentConfig(type="cloud")),
        "description": (
            params.description if params.description is not None else base.get("description")
        ),
        "metadata": patched(base.get("metadata", {}), params.metadata),
        "scope": params.scope or base.get("scope") or "organization",
    }


def _config(config: EnvironmentConfig) -> dict[str, Any]:
    if config.type == "self_hosted":
        if config.networking is not None or config.packages is not None:
            raise ApiProblem(
                400, "config: a self_hosted environment takes no networking or packages"
            )
        return {"type": "self_hosted"}
    networking = config.networking
    if networking is not None and (
        networking.type == "unrestricted"
        or networking.allowed_hosts
        or networking.allow_mcp_servers
        or networking.allow_package_managers
    ):
        raise refuse(
            "config.networking",
            "keel's sandboxes have no network; use a self_hosted environment for tools "
            "that need one",
        )
    if config.packages is not None and config.packages.any_asked():
        raise refuse(
            "config.packages", "keel's sandboxes install no packages; build them into the image"
        )
    return {"type": "cloud", "networking": _NO_NETWORK, "packages": _NO_PACKAGES}
