"""Pick a backend from a store URL (`KEEL_STORE_URL`)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry

from session_store._protocol import EventStore


def open_store(url: str, *, registry: CollectorRegistry | None = None) -> EventStore:
    """`sqlite:///path/to/keel.db`, or `postgresql://user@host:port/db[?schema=name]`. The
    store records its metrics (`session_store._metrics`) on `registry`, the process's.

    The store is not migrated yet: call `migrate()` first.
    """
    # Each backend's driver is imported only when used (asyncpg alone is 0.2 s of a start).
    if url.startswith("sqlite:///"):
        from session_store._sqlite import SqliteEventStore

        return SqliteEventStore(url.removeprefix("sqlite:///"), registry=registry)
    if url.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", None)
        from session_store._postgres import PostgresEventStore

        return PostgresEventStore(
            urlunsplit(parts._replace(query=urlencode(query))), schema=schema, registry=registry
        )
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")
