"""The hands host's side of the local channel to one sandbox's executor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any


class SandboxLost(Exception):
    """The executor went away (its sandbox died or was killed) before answering."""


class ExecutorClient:
    """One connection to an executor; calls are multiplexed on it by call_id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._waiting: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
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

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._result_of({"op": "call", **request})

    async def collect(self, call_id: str) -> dict[str, Any]:
        """The result of a call an earlier host sent; an executor that never received it
        answers `unknown` and refuses it from then on."""
        return await self._result_of({"op": "collect", "call_id": call_id})

    async def cancel(self, call_id: str) -> None:
        await self._send({"op": "cancel", "call_id": call_id})

    async def forget(self, call_id: str) -> None:
        await self._send({"op": "forget", "call_id": call_id})

    async def ping(self, within_s: float = 2.0) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(future)
        await self._send({"op": "ping"})
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

    async def _result_of(self, message: dict[str, Any]) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(message["call_id"], []).append(future)
        await self._send(message)
        return await future

    async def _send(self, message: dict[str, Any]) -> None:
        if self._lost is not None:
            raise self._lost
        try:
            self._writer.write(json.dumps(message).encode() + b"\n")
            await self._writer.drain()
        except ConnectionError as exc:
            raise SandboxLost(f"the executor connection broke: {exc}") from exc

    async def _receive(self) -> None:
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                if message.get("op") == "result":
                    for future in self._waiting.pop(message["call_id"], []):
                        if not future.done():
                            future.set_result(message)
                elif message.get("op") == "pong":
                    while self._pongs:
                        pong = self._pongs.pop()
                        if not pong.done():
                            pong.set_result(None)
        except (ConnectionError, ValueError) as exc:
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
