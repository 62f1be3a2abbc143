"""Where an operator lets tenants point webhooks: exact origins, whole path segments, and a
bad `KEEL_WEBHOOK_URLS` stops the gateway at start, naming it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import WebhookSettings
from gateway._settings import GatewaySettings
from gateway._webhook_urls import WELL_FORMED, WebhookUrls, malformed
from schemas import SettingsError, settings_from_env

ALLOWED = WebhookUrls.parse("https://Hooks.Example.com, http://127.0.0.1:8123/in/, http://[::1]/v6")


@pytest.mark.parametrize(
    ("url", "permitted"),
    [
        ("https://hooks.example.com/anything?x=1", True),
        ("https://HOOKS.example.com:443/", True),
        ("http://hooks.example.com/", False),  # another scheme
        ("https://hooks.example.com:8443/", False),  # another port
        ("https://hooks.example.com.evil.org/", False),  # a longer host
        ("https://evil.org/https://hooks.example.com/", False),
        ("http://127.0.0.1:8123/in", True),
        ("http://127.0.0.1:8123/in/deeper", True),
        ("http://127.0.0.1:8123/inside", False),  # not a whole segment
        ("http://127.0.0.1:8123/", False),
        ("http://127.0.0.1/in/", False),  # port 80
        ("http://[::1]:80/v6/x", True),
    ],
)
def test_a_url_is_allowed_only_under_a_prefix(url: str, permitted: bool) -> None:
    assert malformed(url) is None
    assert ALLOWED.permits(url) is permitted


@pytest.mark.parametrize(
    "url",
    [
        "https://user@hooks.example.com/",
        "https://hooks.example.com/a/../b",
        "https://hooks.example.com/a/%2E%2E/b",
        "https://hooks.example.com/#x",
        "https://hooks.example.com:99999/",
        "https:///nohost",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
    ],
)
def test_a_malformed_url_is_refused_whatever_is_allowed(url: str) -> None:
    assert malformed(url) is not None


def test_nothing_is_allowed_unless_the_operator_says() -> None:
    assert not WebhookSettings().urls().enabled
    settings = settings_from_env(
        GatewaySettings, {"KEEL_WEBHOOK_URLS": "https://a.example.com,  ,https://b.example.com"}
    )
    assert len(settings.webhooks.urls().prefixes) == 2


@pytest.mark.parametrize(
    "value", ["hooks.example.com", "https://a.example.com/?q=1", "https://u:p@a.example.com"]
)
def test_a_bad_setting_stops_the_start_naming_its_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="KEEL_WEBHOOK_URLS"):
        settings_from_env(GatewaySettings, {"KEEL_WEBHOOK_URLS": value})


@given(st.from_regex(WELL_FORMED, fullmatch=True))
def test_every_url_the_document_says_is_well_formed_is(url: str) -> None:
    """The served document's pattern for an endpoint's `url` (what Schemathesis draws
    valid URLs from) takes no URL that is refused as malformed."""
    assert malformed(url) is None, url
