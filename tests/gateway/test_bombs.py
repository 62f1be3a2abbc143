"""Hostile bodies and queries against every operation the API documents: bodies nested a
thousand or a hundred thousand levels deep, bodies a hundred thousand members wide, huge
queries. Each is a 4xx with the error shape, the connection answers instead of resetting,
nothing is written, and the gateway serves on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from session_store import EventStore

SPEC = {"model": {"provider": "scripted", "options": {"script": [{"text": "hi"}]}}}
MAX_BODY = 1_000_000


def _nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _wide_object(members: int) -> bytes:
    return b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(members)) + b"}"


def _wide_array(members: int) -> bytes:
    return b"[" + b",".join(b"%d" % i for i in range(members)) + b"]"


def bombs() -> Iterator[tuple[str, bytes]]:
    """(name, raw JSON value): each alone, and each in the spots bodies take free-form JSON."""
    values = {
        "arrays-1k-deep": _nested_arrays(1_000),
        "arrays-100k-deep": _nested_arrays(100_000),
        "objects-1k-deep": _nested_objects(1_000),
        "objects-60k-deep": _nested_objects(60_000),
        # Deep enough to break nothing while decoding, too deep for the log.
        "objects-200-deep": _nested_objects(200),
        "object-100k-wide": _wide_object(60_000),
        "array-150k-wide": _wide_array(150_000),
    }
    for name, value in values.items():
        yield f"{name}", value
        yield f"{name} as model options", b'{"spec":{"model":{"options":%s}}}' % value
        yield (
            f"{name} as judge options",
            (b'{"spec":{"completion":{"kind":"judge","judge_model":{"options":%s}}}}' % value),
        )
        yield f"{name} as events", b'{"events":%s}' % value
        yield f"{name} as an event", b'{"events":[{"type":"user.message","text":%s}]}' % value
        yield f"{name} as metadata", b'{"metadata":{"k":%s}}' % value
        yield f"{name} as at_seq", b'{"at_seq":%s}' % value
    # Not JSON, though what comes first is: a value of the wrong shape is seen before the
    # garbage after it.
    yield "a number, then more", b"1 2"
    yield "an object of the wrong shape, then garbage", b'{"events":1} x'
    yield "an array, then another", b"[] []"


class Operations:
    """What the served OpenAPI documents: operations taking a body, and every other."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.with_body: list[tuple[str, str]] = []
        self.without_body: list[tuple[str, str]] = []
        for path, methods in document["paths"].items():
            for method, operation in methods.items():
                kind = self.with_body if "requestBody" in operation else self.without_body
                kind.append((method.upper(), path))


@pytest.fixture
async def operations(client: httpx2.AsyncClient) -> Operations:
    found = Operations((await client.get("/openapi.json")).json())
    assert len(found.with_body) >= 3 and len(found.without_body) >= 10, vars(found)
    return found


async def test_no_body_bomb_gets_a_5xx_or_writes_anything(
    client: httpx2.AsyncClient, store: EventStore, operations: Operations
) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    head = await store.head(session_id)
    sessions = len((await client.get("/v1/sessions")).json()["items"])
    for method, template in operations.with_body:
        path = template.replace("{session_id}", session_id)
        for name, body in bombs():
            assert len(body) <= MAX_BODY, name
            response = await client.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
            where = f"{method} {template} with {name}"
            assert 400 <= response.status_code < 500, (where, response.status_code, response.text)
            assert response.json()["error"]["code"], where
    # Nothing was written, and the gateway still serves.
    assert await store.head(session_id) == head
    assert len((await client.get("/v1/sessions")).json()["items"]) == sessions
    assert (await client.get("/healthz")).status_code == 200


async def test_operations_without_a_body_ignore_a_bomb_sent_anyway(
    client: httpx2.AsyncClient, operations: Operations
) -> None:
    """Pause, resume, cancel, delete and the reads take no body: one sent anyway is never
    decoded, so it can break nothing (whatever the operation answers, never a 5xx)."""
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    for method, template in operations.without_body:
        if template.endswith("/stream"):
            continue  # it would stay open; its query is checked below
        path = template.replace("{session_id}", session_id)
        for name, body in bombs():
            response = await client.request(
                method,
                path,
                content=body,
                headers={"content-type": "application/json", "idempotency-key": name},
            )
            where = f"{method} {template} with {name}"
            assert response.status_code < 500, (where, response.status_code, response.text)


async def test_a_body_over_the_limit_is_refused_before_it_is_read(
    client: httpx2.AsyncClient,
) -> None:
    huge = b'{"title":"' + b"x" * (MAX_BODY + 10) + b'"}'
    response = await client.post(
        "/v1/sessions", content=huge, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


async def test_no_query_bomb_gets_a_5xx(client: httpx2.AsyncClient, operations: Operations) -> None:
    session_id = (await client.post("/v1/sessions", json={"spec": SPEC})).json()["id"]
    queries = {
        "a huge number": "9" * 3000,
        "a negative number": "-" + "9" * 100,
        "a float": "1e308",
        "not a number": "%00%ff" * 100,
        "a long string": "x" * 3000,
        "a nested-looking string": "[" * 1000,
    }
    for method, template in [*operations.with_body, *operations.without_body]:
        path = template.replace("{session_id}", session_id)
        for name, value in queries.items():
            params = {p: value for p in ("after", "limit", "seq", "cursor", "status", "deltas")}
            params |= {"created_after": value, "created_before": value}
            if method == "GET" and path.endswith("/stream"):
                continue  # a stream with valid leftovers would stay open; checked below
            response = await client.request(method, path, params=params)
            where = f"{method} {template} with {name}"
            assert response.status_code < 500, (where, response.status_code, response.text)
    stream = await client.get(f"/v1/sessions/{session_id}/stream", params={"after": "9" * 4000})
    assert stream.status_code == 422
