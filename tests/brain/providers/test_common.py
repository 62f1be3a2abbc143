from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from brain.providers._common import response_call_id, retry_after_s, wire_call_id
from schemas import is_valid_id


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_s(headers) == seconds


def test_retry_after_as_an_http_date() -> None:
    later = retry_after_s({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert later is not None and 28 <= later <= 30
    assert retry_after_s({"retry-after": formatdate(time.time() - 30, usegmt=True)}) == 0.0


def test_response_call_ids_are_kept_only_when_valid_long_and_new() -> None:
    taken: set[str] = set()
    kept = response_call_id("toolu_01A09q90qw90lq917835lq9", taken)
    assert kept == "toolu_01A09q90qw90lq917835lq9"
    replaced = [
        response_call_id(provider_id, taken)
        for provider_id in (None, "", "call_0", "has spaces in it, sixteen+", kept)
    ]
    assert len({kept, *replaced}) == 6 and all(is_valid_id(i) for i in replaced)
    assert taken == {kept, *replaced}


def test_wire_ids_suit_every_api_and_are_stable() -> None:
    assert wire_call_id("call_abc123") == "call_abc123"
    for odd in ("ses_s:t0:0", "x" * 64, "a.b"):
        sent = wire_call_id(odd)
        assert sent == wire_call_id(odd) != odd
        assert len(sent) <= 40 and sent.replace("_", "").isalnum()
