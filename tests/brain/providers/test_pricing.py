from __future__ import annotations

import pytest

from brain.providers import ProviderError, cost_usd, price_for
from schemas import ModelSpec, Usage

MILLION = Usage(
    input_tokens=1_000_000,
    output_tokens=1_000_000,
    cache_read_tokens=1_000_000,
    cache_write_tokens=1_000_000,
)


@pytest.mark.parametrize(
    ("name", "usd_in", "usd_out"),
    [
        ("claude-opus-4-6", 5.0, 25.0),
        ("claude-opus-4-5-20251101", 5.0, 25.0),
        ("claude-opus-4-1-20250805", 15.0, 75.0),
        ("claude-opus-4-20250514", 15.0, 75.0),
        ("claude-sonnet-4-6", 3.0, 15.0),
        ("claude-sonnet-4-5-20250929", 3.0, 15.0),
        ("claude-haiku-4-5-20251001", 1.0, 5.0),
        ("gpt-4o-2024-08-06", 2.5, 10.0),
        ("gpt-4o-mini-2024-07-18", 0.15, 0.6),
        ("gpt-4.1", 2.0, 8.0),
        ("gpt-4.1-mini-2025-04-14", 0.4, 1.6),
        ("gpt-4.1-nano", 0.1, 0.4),
    ],
)
def test_known_models_by_longest_prefix(name: str, usd_in: float, usd_out: float) -> None:
    price = price_for(ModelSpec(name=name))
    assert price is not None
    assert (price.input, price.output) == (usd_in, usd_out)


def test_a_response_costs_each_kind_of_token_at_its_price() -> None:
    price = price_for(ModelSpec(name="claude-sonnet-4-6"))
    usage = Usage(input_tokens=2000, output_tokens=500, cache_read_tokens=10_000)
    assert cost_usd(price, usage) == pytest.approx((2000 * 3 + 500 * 15 + 10_000 * 0.3) / 1e6)
    assert cost_usd(price, MILLION) == pytest.approx(3 + 15 + 0.3 + 3.75)


def test_unknown_models_are_free() -> None:
    assert price_for(ModelSpec(provider="openai", name="llama3.1:8b")) is None
    assert cost_usd(None, MILLION) == 0.0


def test_options_set_or_override_prices() -> None:
    local = ModelSpec(
        name="qwen3-coder", options={"usd_per_mtok_input": 1, "usd_per_mtok_output": 2}
    )
    assert cost_usd(price_for(local), MILLION) == pytest.approx(1 + 2 + 1 + 1)
    newer = ModelSpec(name="gpt-4o", options={"usd_per_mtok_output": 12.5})
    price = price_for(newer)
    assert price is not None and (price.input, price.output) == (2.5, 12.5)


@pytest.mark.parametrize("value", ["cheap", -1, True, None])
def test_a_bad_price_option_is_a_final_error(value: object) -> None:
    with pytest.raises(ProviderError) as caught:
        price_for(ModelSpec(name="gpt-4o", options={"usd_per_mtok_input": value}))
    assert not caught.value.retryable and "usd_per_mtok_input" in str(caught.value)
