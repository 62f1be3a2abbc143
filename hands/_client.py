"""The hands host's side of the local channel to one sandbox's executor.

The executor (`hands/executor.py`, stdlib only, inside the sandbox) speaks newline-delimited
JSON; here every line is encoded from, and decoded into, a msgspec Struct, so a message the
sandbox garbled or forged is refused at the edge (the connection counts as lost), never
half-read by the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Final

import msgspec


class ExecutorCall(msgspec.Struct, frozen=True, kw_only=True, tag="call", tag_field="op"):
    call_id: str
    tool: str
    input: dict[str, object] = {}
    idempotent: bool = False
    timeout_s: float = 120.0
    max_output_bytes: int = 30_000
    spill_bytes: int = 64 * 1024 * 1024


class ExecutorResult(msgspec.Struct, frozen=True, kw_only=True, tag="result", tag_field="op"):
    """What became of a call inside the sandbox (`unknown`: the executor cannot tell)."""

    call_id: str
    output: str = ""
    is_error: bool = False
    exit_code: int | None = None
    truncated: bool = False
    # Set when the whole output was spilled to the sandbox's output directory.
    full_output: str | None = None
    duration_ms: float = 0.0
    unknown: bool = False


class _Pong(msgspec.Struct, frozen=True, tag="pong", tag_field="op"):
    pass


class _Error(msgspec.Struct, frozen=True, tag="error", tag_field="op"):
    error: str = ""


_ENCODER: Final = msgspec.json.Encoder()
_REPLY: Final = msgspec.json.Decoder(ExecutorResult | _Pong | _Error)


class SandboxLost(Exception):
    """The executor went away (its sandbox died or was killed) before answering."""


class ExecutorClient:
    """One connection to an executor; calls are multiplexed on it by call_id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._waiting: dict[str, list[asyncio.Future[ExecutorResult]]] = {}
        self._pongs: list[asyncio.Future[None]] = []
        self._lost: SandboxLost | None = None
        self._gone = asyncio.Event()
        self._receiver = asyncio.create_task(self._receive())

    @classmethod
    async def connect(cls, socket_path: Path, within_s: float = 10.0) -> ExecutorClient:
        """Connect once the executor listens; polls, since it may still be starting."""
        deadline = asyncio.get_running_loop().time() + within_s
        # A unix socket path is limited to 107 bytes; reach a deep one through its directory's
        # descriptor, whose /proc path is short.
        directory = os.open(socket_path.parent, os.O_PATH | os.O_DIRECTORY)
        try:
            short_path = f"/proc/self/fd/{directory}/{socket_path.name}"
            while True:
                try:
                    reader, writer = await asyncio.open_unix_connection(
                        short_path, limit=64 * 1024 * 1024
                    )
                    return cls(reader, writer)
                except (FileNotFoundError, ConnectionRefusedError):
                    if asyncio.get_running_loop().time() > deadline:
                        raise SandboxLost(f"no executor listening at {socket_path}") from None
                    await asyncio.sleep(0.002)
        finally:
            os.close(directory)

    @property
    def lost(self) -> bool:
        return self._lost is not None

    async def wait_lost(self) -> None:
        """Return once the executor is gone (its sandbox died or was killed)."""
        await self._gone.wait()

    async def call(self, call: ExecutorCall) -> ExecutorResult:
        return await self._result_of(call.call_id, _ENCODER.encode(call))

    async def collect(self, call_id: str) -> ExecutorResult:
        """The result of a call an earlier host sent; an executor that never received it
        answers `unknown` and refuses it from then on."""
        return await self._result_of(call_id, _op("collect", call_id))

    async def cancel(self, call_id: str) -> None:
        await self._send(_op("cancel", call_id))

    async def forget(self, call_id: str) -> None:
        await self._send(_op("forget", call_id))

    async def ping(self, within_s: float = 2.0) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(future)
        await self._send(b'{"op":"ping"}')
        try:
            await asyncio.wait_for(future, within_s)
        except TimeoutError as exc:
            raise SandboxLost("the executor does not answer") from exc

    async def close(self) -> None:
        self._receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._receiver
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def _result_of(self, call_id: str, message: bytes) -> ExecutorResult:
        future: asyncio.Future[ExecutorResult] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(call_id, []).append(future)
        await self._send(message)
        return await future

    async def _send(self, message: bytes) -> None:
        if self._lost is not None:
            raise self._lost
        try:
            self._writer.write(message + b"\n")
            await self._writer.drain()
        except ConnectionError as exc:
            raise SandboxLost(f"the executor connection broke: {exc}") from exc

    async def _receive(self) -> None:
        try:
            while line := await self._reader.readline():
                match _REPLY.decode(line):
                    case ExecutorResult() as result:
                        for future in self._waiting.pop(result.call_id, []):
                            if not future.done():
                                future.set_result(result)
                    case _Pong():
                        while self._pongs:
                            pong = self._pongs.pop()
                            if not pong.done():
                                pong.set_result(None)
                    case _Error():
                        pass  # the executor refused a request of ours; its caller times out
        except (ConnectionError, ValueError, msgspec.DecodeError) as exc:
            self._fail(SandboxLost(f"the executor connection broke: {exc}"))
        else:
            self._fail(SandboxLost("the executor closed its connection"))

    def _fail(self, error: SandboxLost) -> None:
        self._lost = error
        self._gone.set()
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(error)
        self._waiting.clear()
        for pong in self._pongs:
            if not pong.done():
                pong.set_exception(error)


def _op(op: str, call_id: str) -> bytes:
    return _ENCODER.encode({"op": op, "call_id": call_id})
