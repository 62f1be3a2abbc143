"""Threads in the Managed Agents events: what a session's log and a thread's own log say
of threads, as the SDK's thread events.

On the spawning session's stream (its own log): `session.thread_created` and the thread's
`session.thread_status_running` when a call spawns one, `agent.thread_message_sent` (and
the thread running again) when a call messages one, and the thread's
`session.thread_status_idle` / `_terminated` when its reply is recorded: the thread's
status changes cross-posted, from the spawning session's own log. A thread that waits on the user
notes it in the session (`thread.waiting`), which puts its calls to answer on the session's
stream too (`agent.tool_use` / `agent.custom_tool_use` with `session_thread_id`, under the
ids they have on the thread's stream, so an answer to either goes to the thread) and the
thread's `session.thread_status_idle` with `requires_action`. On a thread's own stream:
`agent.thread_message_received` for its input from another thread, and its status changes
as `session.thread_status_*`. The primary thread's id is the session's.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Any

from gateway.managed._event_ids import FIRST_USE, event_id
from schemas import (
    ThreadMessageReceived,
    ThreadMessageSent,
    ThreadOrigin,
    ThreadReplied,
    ThreadSpawned,
    ThreadWaiting,
    Usage,
    WaitingCall,
)

ThreadEvent = (
    ThreadSpawned | ThreadMessageSent | ThreadMessageReceived | ThreadReplied | ThreadWaiting
)
# (part, type, fields) of the events one keel event becomes.
Part = tuple[int, str, dict[str, Any]]


class ThreadsView:
    """What the projection of one log keeps of threads: the names of those it spawned,
    what each had spent when its last reply was recorded, the calls of theirs already
    shown waiting on the user, and, for a thread's own log, where it came from."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.spent: dict[str, tuple[Usage, float]] = {}
        self.shown_waiting: set[str] = set()
        self.origin: ThreadOrigin | None = None

    def copy(self) -> ThreadsView:
        other = ThreadsView()
        other.names, other.spent, other.origin = dict(self.names), dict(self.spent), self.origin
        other.shown_waiting = set(self.shown_waiting)
        return other

    def spend(self) -> tuple[Usage, float]:
        """What the threads spawned here spent, as their recorded replies say: what the
        brain's budgets count of them (a reply carries its thread's totals so far)."""
        usage, cost_usd = Usage(), 0.0
        for thread_usage, thread_cost in self.spent.values():
            usage, cost_usd = usage + thread_usage, cost_usd + thread_cost
        return usage, cost_usd

    def project(self, event: ThreadEvent) -> list[Part]:
        match event:
            case ThreadSpawned(thread_id=thread_id, agent_name=name):
                self.names[thread_id] = name
                named = {"session_thread_id": thread_id, "agent_name": name}
                return [
                    (0, "session.thread_created", {**named, "workflow_run_id": None}),
                    (1, "session.thread_status_running", named),
                ]
            case ThreadMessageSent(thread_id=thread_id, text=text, agent_name=name):
                sent = {
                    "content": [{"type": "text", "text": text}],
                    "to_session_thread_id": thread_id,
                    "to_agent_name": name,
                }
                running = {"session_thread_id": thread_id, "agent_name": name}
                return [
                    (0, "agent.thread_message_sent", sent),
                    (1, "session.thread_status_running", running),
                ]
            case ThreadMessageReceived(from_session_id=sender, text=text, from_agent_name=name):
                received: dict[str, Any] = {
                    "content": [{"type": "text", "text": text}],
                    "from_session_thread_id": sender,
                }
                if name:
                    received["from_agent_name"] = name
                return [(0, "agent.thread_message_received", received)]
            case ThreadReplied(thread_id=thread_id, status=status):
                self.spent[thread_id] = (event.usage, event.cost_usd)
                return [(0, *thread_status(thread_id, self.names.get(thread_id, ""), status))]
            case ThreadWaiting(thread_id=thread_id, agent_name=name, calls=calls):
                named = {"session_thread_id": thread_id, "agent_name": name}
                parts: list[Part] = []
                for call in calls:
                    if call.call_id not in self.shown_waiting:
                        self.shown_waiting.add(call.call_id)
                        parts.append((len(parts), *_waiting_use(call, thread_id)))
                stop = {
                    "type": "requires_action",
                    "event_ids": [thread_event_id(call, thread_id) for call in calls],
                }
                idle = {**named, "stop_reason": stop, "stop_details": None}
                return [*parts, (len(parts), "session.thread_status_idle", idle)]

    def own_thread_id(self) -> str:
        """The thread whose own log this is; "" for a session's own log."""
        return "" if self.origin is None else self.origin.thread_id

    def own_id(self) -> dict[str, str]:
        """`session_thread_id` of an event of a thread's own log; nothing on the primary's."""
        return {} if self.origin is None else {"session_thread_id": self.origin.thread_id}

    def own_status(self, status: str, guard: str | None) -> list[Part]:
        """A thread's own status change, on its own stream, as a thread status event."""
        assert self.origin is not None
        origin = self.origin
        if status == "running":
            named = {"session_thread_id": origin.thread_id, "agent_name": origin.agent_name}
            return [(0, "session.thread_status_running", named)]
        if status in ("idle", "completed", "failed", "cancelled"):
            return [(0, *thread_status(origin.thread_id, origin.agent_name, status, guard))]
        return []

    def own_wait(self, event_ids: list[str]) -> list[Part]:
        """A thread's wait for the user to answer its calls (`event_ids`), on its own stream."""
        assert self.origin is not None
        named = {"session_thread_id": self.origin.thread_id, "agent_name": self.origin.agent_name}
        stop = {"type": "requires_action", "event_ids": event_ids}
        return [
            (0, "session.thread_status_idle", {**named, "stop_reason": stop, "stop_details": None})
        ]


def thread_status(
    thread_id: str, name: str, status: str, guard: str | None = None
) -> tuple[str, dict[str, Any]]:
    named: dict[str, Any] = {"session_thread_id": thread_id, "agent_name": name}
    if status in ("failed", "cancelled"):
        return "session.thread_status_terminated", named
    stop = {"type": guard or "end_turn"}
    return "session.thread_status_idle", {**named, "stop_reason": stop, "stop_details": None}


def thread_event_id(call: WaitingCall, thread_id: str) -> str:
    """The id a waiting call's tool use has on its thread's stream (`Projection._response`)."""
    return event_id(call.response_seq, FIRST_USE + call.use_index, thread_id)


def _waiting_use(call: WaitingCall, thread_id: str) -> tuple[str, dict[str, Any]]:
    """A thread's call waiting on the user, as the thread's stream shows it."""
    fields: dict[str, Any] = {
        "id": thread_event_id(call, thread_id),
        "name": call.name,
        "input": call.input,
        "session_thread_id": thread_id,
    }
    if call.waits_for == "custom":
        return "agent.custom_tool_use", fields
    asks = call.waits_for == "approval"
    return "agent.tool_use", {
        **fields,
        "evaluated_permission": "ask" if asks else "allow",
        "evaluation": {"type": "always_ask" if asks else "always_allow"},
    }
