"""The nesting bound: counted without recursion, however deep the value."""

from __future__ import annotations

import msgspec

from schemas import MAX_JSON_DEPTH, AgentSpec, ModelSpec, UnknownEvent, decode_event, nesting_depth


def test_depth_counts_containers_and_structs() -> None:
    assert nesting_depth("text") == 0
    assert nesting_depth({}) == 1
    assert nesting_depth({"a": [1, {"b": ()}]}) == 4
    spec = AgentSpec(model=ModelSpec(options={"script": [{"text": "hi"}]}))
    assert nesting_depth(spec) == 5  # spec, model, options, script, turn


def test_a_value_deeper_than_the_stack_is_measured_without_recursion() -> None:
    value: object = 1
    for _ in range(200_000):
        value = [value]
    assert nesting_depth(value) == MAX_JSON_DEPTH + 1  # it stops counting past the bound
    assert nesting_depth(value, stop_past=10**6) == 200_000


def test_decoding_past_the_bound_is_refused_where_input_comes_in() -> None:
    deep = msgspec.json.decode(b'{"a":' * 80 + b"1" + b"}" * 80)
    assert nesting_depth(deep) > MAX_JSON_DEPTH
    assert nesting_depth(deep, stop_past=100) == 80


def test_an_event_too_deep_to_decode_replays_as_unknown() -> None:
    """Whoever wrote it, a log must replay: a row too deep to decode is an UnknownEvent."""
    options = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    data = b'{"type":"session.created","spec":{"model":{"options":%s}}}' % options
    event = decode_event("session.created", data)
    assert isinstance(event, UnknownEvent) and "recursion" in event.error
