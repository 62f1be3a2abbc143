"""What reaches a run while it drives its session: tool outcomes, and pokes (the log grew).

Subscriptions deliver here at any moment; the run's one task takes from here between steps,
so what it folds and appends never interleaves with a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib

from brain.deps import Message
from schemas import ToolOutcome


class Inbox:
    def __init__(self) -> None:
        # Something arrived; None means "re-read the log" (input, a status change).
        self._arrivals: asyncio.Queue[ToolOutcome | None] = asyncio.Queue()
        # Outcomes heard but not yet recorded, by call_id.
        self.outcomes: dict[str, ToolOutcome] = {}
        # Calls the run sends itself (the completion check), whose outcomes go to a waiter
        # instead of the log.
        self._side_calls: dict[str, asyncio.Future[ToolOutcome]] = {}

    def heard(self, outcome: ToolOutcome) -> None:
        waiter = self._side_calls.pop(outcome.call_id, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(outcome)
            return
        self.outcomes[outcome.call_id] = outcome
        self._arrivals.put_nowait(outcome)

    async def poked(self, _: Message) -> None:
        self._arrivals.put_nowait(None)

    def take_arrivals(self) -> bool:
        """Empty the queue of arrivals; True when it held a poke (the log must be re-read)."""
        poked = False
        while not self._arrivals.empty():
            poked = self._arrivals.get_nowait() is None or poked
        return poked

    async def wait(self, up_to_s: float) -> bool:
        """Wait up to `up_to_s` for something to arrive (left for `take_arrivals`); False if
        nothing did."""
        with contextlib.suppress(TimeoutError):
            item = await asyncio.wait_for(self._arrivals.get(), max(up_to_s, 0.0))
            self._arrivals.put_nowait(item)
            return True
        return False

    def expect(self, call_id: str) -> asyncio.Future[ToolOutcome]:
        """The outcome of a call the run sends itself, delivered to the future returned."""
        waiter: asyncio.Future[ToolOutcome] = asyncio.get_running_loop().create_future()
        self._side_calls[call_id] = waiter
        return waiter

    def stop_expecting(self, call_id: str) -> None:
        self._side_calls.pop(call_id, None)
