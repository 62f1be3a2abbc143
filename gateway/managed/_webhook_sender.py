"""One webhook on the wire: signed as Standard Webhooks says, POSTed, taken or not.

The signature is what the SDK's `client.beta.webhooks.unwrap` verifies, made with the same
library (`standardwebhooks`): HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>.<body>` under
the endpoint's `whsec_` secret, in the `webhook-id`, `webhook-timestamp` and
`webhook-signature` headers. Each try is signed anew: a receiver refuses a timestamp more
than five minutes old, and a webhook may wait longer than that for its receiver to be back.

Only a 2xx answer is taken. A redirect is not followed (it could lead anywhere the operator
did not allow), and counts as a failure, as any other answer, a timeout or a refused
connection does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import httpx2
import msgspec
from standardwebhooks import Webhook

_ENCODER: Final = msgspec.json.Encoder()


class DeliveryFailed(Exception):
    """The receiver did not take the webhook; it is sent again later."""


class WebhookSender:
    def __init__(self, timeout_s: float) -> None:
        self._client = httpx2.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            headers={"user-agent": "keel-webhooks"},
        )

    async def send(self, url: str, secret: str, event: dict[str, Any]) -> None:
        """POST `event` to `url`; DeliveryFailed unless it is answered with a 2xx."""
        body = _ENCODER.encode(event)
        now = dt.datetime.now(dt.UTC)
        signature = Webhook(secret).sign(event["id"], now, body.decode())
        headers = {
            "content-type": "application/json",
            "webhook-id": event["id"],
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx2.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise DeliveryFailed(f"answered {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
