"""Request bodies: read once with a size limit, decoded into msgspec Structs.

Routes decode their bodies here, not with pydantic: a body over `MAX_BODY_BYTES` is a 413
before it is read whole, malformed JSON or a wrong shape is a 422 with msgspec's message,
and so is a body nested deeper than a brain can read back from the log (even one deep
enough to exhaust the decoder's recursion).
"""

from __future__ import annotations

from typing import Final, TypeVar

import msgspec
from fastapi import Request

from gateway._errors import ApiProblem
from schemas import MAX_JSON_DEPTH, nesting_depth

T = TypeVar("T")

# A request body larger than this is refused with 413 before it is decoded.
MAX_BODY_BYTES: Final = 1_000_000


async def raw_body(request: Request) -> bytes:
    """The body, read once (kept for whoever asks again), refused past the limit."""
    kept: bytes | None = getattr(request.state, "raw_body", None)
    if kept is not None:
        return kept
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiProblem(413, f"the body is over {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiProblem(413, f"the body is over {MAX_BODY_BYTES} bytes")
    request.state.raw_body = body
    return body


def _whole_as_int(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


# JSON, like the JSON Schema the OpenAPI shows, does not tell 2.0 from 2: a body the strict
# decode refuses is read again with whole floats as ints before it is refused.
_WHOLE_FLOATS: Final = msgspec.json.Decoder(float_hook=_whole_as_int)
_TOO_DEEP: Final = f"the body nests deeper than {MAX_JSON_DEPTH} levels"


async def decode_body(request: Request, kind: type[T]) -> T:
    body = await raw_body(request)
    try:
        decoded = _decode(body, kind)
    except RecursionError as exc:
        raise ApiProblem(422, _TOO_DEEP) from exc
    # Decodable here, but every brain must be able to read it back from the log too.
    if nesting_depth(decoded) > MAX_JSON_DEPTH:
        raise ApiProblem(422, _TOO_DEEP)
    return decoded


async def decode_optional_body(request: Request, kind: type[T]) -> T:
    """Like `decode_body`, but no body at all (the SDKs send none when every field is
    left out) is `kind` with its defaults."""
    if not (await raw_body(request)).strip():
        return kind()
    return await decode_body(request, kind)


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        try:
            return msgspec.convert(_WHOLE_FLOATS.decode(body), type=kind)
        except msgspec.ValidationError:
            raise ApiProblem(422, str(exc)) from exc
        except msgspec.DecodeError as malformed:
            # A wrong type is seen before what follows it: `1 2` is not of the shape, and
            # not JSON either.
            raise ApiProblem(422, f"the body is not valid JSON: {malformed}") from exc
    except msgspec.DecodeError as exc:
        raise ApiProblem(422, f"the body is not valid JSON: {exc}") from exc
