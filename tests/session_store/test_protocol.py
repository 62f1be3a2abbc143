"""The store's interface is split by capability: each method belongs to exactly one part,
and the parts together are everything a backend offers."""

from __future__ import annotations

import inspect

import pytest

from session_store import (
    EventStore,
    PostgresEventStore,
    Resources,
    SessionCatalog,
    SessionLog,
    SessionReader,
    SqliteEventStore,
    Store,
    Tenancy,
    Threads,
    WebhookDeliveries,
    WebhookEndpoints,
    WorkQueue,
)

PARTS = (
    Store,
    SessionReader,
    SessionLog,
    SessionCatalog,
    Tenancy,
    Threads,
    Resources,
    WorkQueue,
    WebhookEndpoints,
    WebhookDeliveries,
)


def own_members(protocol: type) -> set[str]:
    """What `protocol` itself declares, not what it inherits."""
    declared = set(vars(protocol).get("__annotations__", {}))
    declared |= {name for name, value in vars(protocol).items() if inspect.isfunction(value)}
    return {name for name in declared if not name.startswith("_")}


def test_every_method_belongs_to_exactly_one_part() -> None:
    seen: dict[str, str] = {}
    for part in PARTS:
        for name in own_members(part):
            assert name not in seen, f"{name} is in both {seen[name]} and {part.__name__}"
            seen[name] = part.__name__
    assert own_members(EventStore) == set()  # the whole store adds nothing of its own
    assert set(PARTS) <= set(EventStore.__mro__)


@pytest.mark.parametrize("backend", [SqliteEventStore, PostgresEventStore])
def test_the_parts_are_what_a_backend_offers(backend: type) -> None:
    offered = {
        name
        for name, value in inspect.getmembers(backend)
        if not name.startswith("_") and inspect.iscoroutinefunction(value)
    }
    declared = {name for part in PARTS for name in own_members(part)} - {"health"}
    assert offered == declared
