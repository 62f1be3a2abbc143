"""What a response cost, in USD, from its token usage.

A small built-in table of list prices (USD per million tokens) for well-known Anthropic and
OpenAI models, matched by the longest prefix of the model name, so dated and aliased names
(`claude-sonnet-4-6`, `gpt-4.1-mini-2025-04-14`) find their family. Prices change: a session
can set its own with `ModelSpec.options` `usd_per_mtok_input` and `usd_per_mtok_output`
(and `usd_per_mtok_cache_read`, `usd_per_mtok_cache_write`). A model the table does not know,
with no prices in its options, costs 0.0 (a local model, usually).
"""

from __future__ import annotations

from typing import Final

import msgspec

from brain.providers._base import ProviderError
from schemas import ModelSpec, Usage


class Price(msgspec.Struct, frozen=True, kw_only=True):
    """USD per million tokens of each kind."""

    input: float
    output: float
    cache_read: float
    cache_write: float


def _anthropic(usd_in: float, usd_out: float) -> Price:
    # Cache reads bill at a tenth of input, 5-minute cache writes at 1.25 times input.
    return Price(input=usd_in, output=usd_out, cache_read=usd_in / 10, cache_write=usd_in * 1.25)


def _openai(usd_in: float, usd_out: float, usd_cached: float) -> Price:
    # OpenAI bills no premium to write its cache: those tokens are plain input.
    return Price(input=usd_in, output=usd_out, cache_read=usd_cached, cache_write=usd_in)


# List prices as published (Anthropic and OpenAI pricing pages, late 2026).
PRICES: Final[dict[str, Price]] = {
    "claude-opus-4-": _anthropic(5.0, 25.0),  # Opus 4.5 and later
    "claude-opus-4-0": _anthropic(15.0, 75.0),
    "claude-opus-4-1": _anthropic(15.0, 75.0),
    "claude-opus-4-2025": _anthropic(15.0, 75.0),  # claude-opus-4-20250514
    "claude-sonnet-4": _anthropic(3.0, 15.0),
    "claude-haiku-4-5": _anthropic(1.0, 5.0),
    "gpt-4o": _openai(2.5, 10.0, 1.25),
    "gpt-4o-mini": _openai(0.15, 0.6, 0.075),
    "gpt-4.1": _openai(2.0, 8.0, 0.5),
    "gpt-4.1-mini": _openai(0.4, 1.6, 0.1),
    "gpt-4.1-nano": _openai(0.1, 0.4, 0.025),
    # keel's own rule-based model: free, and listed so, not merely unknown.
    "keel-scripted": Price(input=0.0, output=0.0, cache_read=0.0, cache_write=0.0),
}

_OPTIONS: Final = {
    "input": "usd_per_mtok_input",
    "output": "usd_per_mtok_output",
    "cache_read": "usd_per_mtok_cache_read",
    "cache_write": "usd_per_mtok_cache_write",
}


def price_for(model: ModelSpec) -> Price | None:
    """The model's price: the table's, with the options' prices over it; None if neither.

    Raises ProviderError (not retryable) when an option is not a non-negative number, before
    any tokens are spent.
    """
    table = _lookup(model.name)
    given: dict[str, float] = {}
    for field, option in _OPTIONS.items():
        if option not in model.options:
            continue
        value = model.options[option]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ProviderError(
                f"options.{option} must be a non-negative number, not {value!r}", retryable=False
            )
        given[field] = float(value)
    if not given:
        return table
    if table is None:
        # An unlisted model: cached tokens cost what input does unless said otherwise.
        input_price = given.get("input", 0.0)
        table = Price(
            input=input_price, output=0.0, cache_read=input_price, cache_write=input_price
        )
    return msgspec.structs.replace(table, **given)


def cost_usd(price: Price | None, usage: Usage) -> float:
    if price is None:
        return 0.0
    micro_usd = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    )
    return micro_usd / 1_000_000


def _lookup(name: str) -> Price | None:
    matches = [prefix for prefix in PRICES if name.startswith(prefix)]
    return PRICES[max(matches, key=len)] if matches else None
