"""The sessions a drill runs through the gateway, and the streams it keeps open on them.

Each session plays a script (the deterministic `scripted` model) of bash calls whose effects
can be counted: call n appends `drill-effect-n` to `.effects` in the workspace, waits a
little (a window for faults to land mid-call), and prints the file. A call that ran twice
shows its line twice in every later output.

Each session's SSE stream stays open through the faults and reconnects with
`Last-Event-ID` after any error; the ids it sees must follow one another with no gap and no
duplicate.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import httpx2
import msgspec

from drill._invariants import Violation
from schemas import TERMINAL_STATUSES, AgentSpec, Budgets, ModelSpec, SandboxSpec

EFFECT: Final = "drill-effect-"
CALLS_PER_SESSION: Final = 5
# Long enough for a fault to land while a call runs, short enough to keep a drill quick.
CALL_S: Final = 0.4
MODEL_LATENCY_MS: Final = 150.0
# Where a request of the drill gives up and tries again (the gateway may be gone).
REQUEST_TIMEOUT: Final = httpx2.Timeout(10.0, read=30.0)


def drill_spec() -> dict[str, Any]:
    """A session of CALLS_PER_SESSION counted bash calls, then an answer."""
    script: list[dict[str, Any]] = [
        {
            "text": f"Call {n}.",
            "tool_calls": [
                {
                    "name": "bash",
                    "input": {
                        "command": f"echo {EFFECT}{n} >> .effects && sleep {CALL_S} && cat .effects"
                    },
                }
            ],
            "latency_ms": MODEL_LATENCY_MS,
        }
        for n in range(1, CALLS_PER_SESSION + 1)
    ]
    script.append({"text": "Done.", "latency_ms": MODEL_LATENCY_MS})
    spec = AgentSpec(
        model=ModelSpec(provider="scripted", name="scripted", options={"script": script}),
        system_prompt="A keel drill.",
        tools=["bash"],
        budgets=Budgets(max_turns=50),
        sandbox=SandboxSpec(call_timeout_s=60),
    )
    return msgspec.to_builtins(spec)  # type: ignore[no-any-return]


async def create_session(http: httpx2.AsyncClient, key: str, give_up: asyncio.Event) -> str:
    """A new session, asked for with `key` until the gateway says 201 (retried with the same
    Idempotency-Key, so a gateway killed after it wrote makes no second session)."""
    body = {"spec": drill_spec(), "message": "go"}
    while True:
        try:
            response = await http.post(
                "/v1/sessions", json=body, headers={"idempotency-key": key}, timeout=10.0
            )
            if response.status_code == 201:
                return str(response.json()["id"])
        except httpx2.HTTPError:
            pass
        if give_up.is_set():
            raise TimeoutError(f"no session was made for {key}")
        await asyncio.sleep(0.2)


class StreamWatch:
    """One session's stream, followed to its end across reconnects."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.last_seq = 0
        # Attempts after an error, failed ones included (a gateway restarting refuses some).
        self.reconnects = 0
        self.violations: list[Violation] = []
        # When each event arrived (unix s): how long a fault kept the client waiting.
        self.received: list[float] = []

    async def follow(self, http: httpx2.AsyncClient, give_up: asyncio.Event) -> None:
        """Until the stream ends with the session over, or `give_up` is set."""
        while not give_up.is_set():
            try:
                await self._read(http, give_up)
                if await self._over(http):
                    return
            except httpx2.HTTPError:
                self.reconnects += 1  # the gateway went away: on after the last event seen
            await asyncio.sleep(0.2)

    async def _read(self, http: httpx2.AsyncClient, give_up: asyncio.Event) -> None:
        path = f"/v1/sessions/{self.session_id}/stream"
        headers = {"last-event-id": str(self.last_seq)}
        async with http.stream("GET", path, headers=headers, timeout=REQUEST_TIMEOUT) as response:
            if response.status_code != 200:
                return
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    self._saw(int(line.removeprefix("id: ")))
                if give_up.is_set():
                    return

    def _saw(self, seq: int) -> None:
        self.received.append(time.time())
        if seq <= self.last_seq:
            self._found("stream_duplicate", f"seq {seq} again after {self.last_seq}", seq)
        elif seq != self.last_seq + 1:
            self._found("stream_gap", f"seq {seq} after {self.last_seq}", seq)
        self.last_seq = max(self.last_seq, seq)

    def _found(self, kind: str, detail: str, seq: int) -> None:
        self.violations.append(
            Violation(kind=kind, session_id=self.session_id, detail=detail, seq=seq)
        )

    async def _over(self, http: httpx2.AsyncClient) -> bool:
        response = await http.get(f"/v1/sessions/{self.session_id}", timeout=10.0)
        return response.status_code == 200 and response.json()["status"] in TERMINAL_STATUSES


class Workload:
    """`slots` sessions at a time, each followed by the next while the faults go on."""

    def __init__(self, http: httpx2.AsyncClient, run_id: str, slots: int) -> None:
        self.http = http
        self.run_id = run_id
        self.slots = slots
        self.watches: list[StreamWatch] = []
        self.stop_creating = asyncio.Event()
        self.give_up = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(*(self._slot(slot) for slot in range(self.slots)))

    async def _slot(self, slot: int) -> None:
        number = 0
        while not self.stop_creating.is_set():
            number += 1
            key = f"drill-{self.run_id}-{slot}-{number}"
            try:
                session_id = await create_session(self.http, key, self.give_up)
            except TimeoutError:
                return
            watch = StreamWatch(session_id)
            self.watches.append(watch)
            await watch.follow(self.http, self.give_up)
