"""`/v1/webhook_endpoint`: where a tenant's session webhooks go (keel's own API: the SDK has
no call that sets an endpoint, only `webhooks.unwrap`, which verifies what arrives).

A tenant has one endpoint: `PUT` sets it (`url`, and the `event_types` it takes, every one
keel sends when empty), `GET` shows it, `DELETE` removes it. It is made with a Standard
Webhooks secret (`whsec_` and 32 random bytes in base64), which `GET` shows to the tenant's
keys and which a later `PUT` keeps, as it keeps the endpoint's place in every session's
events: a new URL gets what the old one had not been sent. The URL must be one the operator
allows (`_webhook_urls`).
"""

from __future__ import annotations

import base64
import secrets
from typing import Annotated, Literal

import msgspec
from fastapi import APIRouter, Request, Response

from gateway._access import Tenant
from gateway._bodies import decode_body
from gateway._errors import ApiProblem
from gateway._services import GatewayServices, Services
from gateway._webhook_urls import malformed
from gateway.managed._common import answer
from gateway.managed._projection import rfc3339
from gateway.managed._shapes import Deleted
from gateway.managed._webhook_events import WEBHOOK_TYPES
from session_store import WebhookEndpoint

router = APIRouter(tags=["webhooks"])

_PATH = "/v1/webhook_endpoint"


class WebhookEndpointParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    event_types: Annotated[list[str], msgspec.Meta(max_length=len(WEBHOOK_TYPES))] = []


class WebhookEndpointView(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's endpoint as the API shows it (keel's own: the SDK has no such model)."""

    id: str
    type: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    # Empty: every type keel sends.
    event_types: list[str]
    # The Standard Webhooks secret (`whsec_...`) receivers verify the signatures with.
    secret: str
    created_at: str
    updated_at: str


def endpoint_view(endpoint: WebhookEndpoint) -> WebhookEndpointView:
    return WebhookEndpointView(
        id=endpoint.endpoint_id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        secret=endpoint.secret,
        created_at=rfc3339(endpoint.created_at),
        updated_at=rfc3339(endpoint.updated_at),
    )


@router.put(_PATH, response_class=Response)
async def set_webhook_endpoint(tenant: Tenant, request: Request, services: Services) -> Response:
    """Send this tenant's session webhooks to `url` (only `event_types`, if given)."""
    params = await decode_body(request, WebhookEndpointParams)
    problem = malformed(params.url)
    if problem is not None:
        raise ApiProblem(400, f"url: {problem}")
    urls = services.webhook_urls
    if not urls.enabled:
        raise ApiProblem(
            403,
            "webhooks are off on this keel: its operator allows no webhook URLs "
            "(KEEL_WEBHOOK_URLS)",
        )
    if not urls.permits(params.url):
        raise ApiProblem(403, "url: this keel's operator does not allow webhooks to it")
    unknown = sorted(set(params.event_types) - set(WEBHOOK_TYPES))
    if unknown:
        raise ApiProblem(
            400,
            f"event_types: keel sends no {unknown[0]!r} webhook; it sends "
            + ", ".join(WEBHOOK_TYPES),
        )
    endpoint = await services.store.set_webhook_endpoint(
        tenant, params.url, sorted(set(params.event_types)), new_secret=_new_secret()
    )
    return answer(endpoint_view(endpoint))


@router.get(_PATH, response_class=Response)
async def get_webhook_endpoint(tenant: Tenant, services: Services) -> Response:
    return answer(endpoint_view(await _endpoint(tenant, services)))


@router.delete(_PATH, response_class=Response)
async def delete_webhook_endpoint(tenant: Tenant, services: Services) -> Response:
    """Stop sending webhooks; a new endpoint starts from the events after it is made."""
    endpoint = await _endpoint(tenant, services)
    await services.store.delete_webhook_endpoint(tenant)
    return answer(Deleted(id=endpoint.endpoint_id, type="webhook_endpoint_deleted"))


async def _endpoint(tenant: str, services: GatewayServices) -> WebhookEndpoint:
    endpoint = await services.store.get_webhook_endpoint(tenant)
    if endpoint is None:
        raise ApiProblem(404, f"no webhook endpoint: set one with PUT {_PATH}")
    return endpoint


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
