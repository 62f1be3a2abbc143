"""The web viewer over a real socket: one static page, no data, no secret, not in the API."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx2

from session_store import EventStore

PAGES = ("/", "/view/ses_anything")


async def test_the_page_is_served_as_html_to_anyone(gateway_url: str) -> None:
    async with httpx2.AsyncClient(base_url=gateway_url) as anonymous:
        for path in PAGES:
            page = await anonymous.get(path)
            assert page.status_code == 200, (path, page.text)
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert page.text.startswith("<!doctype html>")
        # One page for every route: it finds the session id in its own address.
        assert (await anonymous.get(PAGES[0])).text == (await anonymous.get(PAGES[1])).text


async def test_the_page_routes_are_not_in_the_openapi_document(
    client: httpx2.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths and "/view/{session_id}" not in paths
    assert "/v1/sessions/{session_id}/stream" in paths
    # What the page reads a session's threads with is the API's, documented like the rest.
    threads = paths["/v1/sessions/{session_id}/threads"]["get"]["responses"]["200"]
    schema = threads["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/SessionList"}


async def test_the_page_carries_no_secret_and_needs_nothing_from_elsewhere(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    key = (await store.create_api_key("acme", "viewer")).key
    session_id = (await client.post("/v1/sessions", json={"title": "private"})).json()["id"]
    page = (await client.get(f"/view/{session_id}")).text
    # The same page with a key as without one: the data comes only through /v1, by fetch.
    async with httpx2.AsyncClient(base_url=str(client.base_url)) as anonymous:
        assert (await anonymous.get(f"/view/{session_id}")).text == page
    assert key not in page and "keel_" not in page
    assert session_id not in page and "private" not in page
    # Self-contained: no script, style, font or image from another origin.
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "@import" not in page and "url(" not in page


async def test_event_text_can_never_run_as_code(client: httpx2.AsyncClient) -> None:
    response = await client.get("/")
    page = response.text
    # The page renders text only: it never parses strings as HTML.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in page, sink
    # And the policy runs the page's own inline script and style only, by their hashes.
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    for tag in ("script", "style"):
        (block,) = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
