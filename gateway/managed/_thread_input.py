"""Which log a user event sent to a session goes to: the session's own, or one of its
threads'.

A `user.interrupt` (or a `user.tool_confirmation`) naming a thread by `session_thread_id`
goes to that thread's log; a thread that is not of this session is a 404, as any unknown
thread is. An answer naming no thread (a confirmation, a custom tool's result) goes where
its `tool_use_id` is waiting: the session's own open calls first, else the one thread of
the session where a call of that id waits, as the Managed Agents API routes the answers
to a sub-agent's calls ("the server routes ... by `tool_use_id`"). Ids are looked up in
this session's logs only: another session's or another tenant's call is never found. Where
an answer lands, it is checked again against the open calls at the head its append
expects (`_user_events.to_log`), so it lands once.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway._errors import ApiProblem
from gateway._services import GatewayServices
from gateway.managed._folds import Projections, fold
from gateway.managed._projection import Projection
from gateway.managed._shapes import (
    EventParams,
    UserCustomToolResultParams,
    UserInterruptParams,
    UserToolConfirmationParams,
    UserToolResultParams,
)
from schemas import TERMINAL_STATUSES
from session_store import SessionInfo

# An event sent, with its index in the request (what an error names).
Indexed = tuple[int, EventParams]


class SessionLogs:
    """The logs of one session a request may write to: the session's own and its
    threads', each folded to its head once (a send folds again before it appends)."""

    def __init__(
        self,
        session: SessionInfo,
        own: Projection,
        services: GatewayServices,
        projections: Projections,
    ) -> None:
        self.session = session
        self.own = own
        self._services = services
        self._projections = projections
        self._threads: dict[str, SessionInfo] | None = None
        self._calls: dict[str, Projection] = {}

    async def route(self, params: Sequence[EventParams]) -> dict[str, list[Indexed]]:
        """The events for each log, by its session id (the session's own first), each
        log's in the order sent."""
        routed: dict[str, list[Indexed]] = {self.session.session_id: []}
        for i, event in enumerate(params):
            target = await self._target(event, f"events[{i}]")
            routed.setdefault(target, []).append((i, event))
        return routed

    async def _thread(self, thread_id: str, where: str) -> SessionInfo:
        """A thread of this session that takes input, else a 404 (not of this session) or a
        409 (it ended, or was archived)."""
        threads = await self._threads_of_session()
        thread = threads.get(thread_id)
        if thread is None:
            raise ApiProblem(
                404, f"{where}: no thread {thread_id!r} in session {self.session.session_id}"
            )
        if thread.status in TERMINAL_STATUSES or thread.archived_at is not None:
            raise ApiProblem(409, f"{where}: thread {thread_id} ended or is archived; no input")
        return thread

    async def _target(self, event: EventParams, where: str) -> str:
        match event:
            case UserInterruptParams(session_thread_id=str() as named) | (
                UserToolConfirmationParams(session_thread_id=str() as named)
            ):
                if named == self.session.session_id:
                    return named  # the primary thread is the session
                return (await self._thread(named, f"{where}.session_thread_id")).session_id
            case (
                UserToolConfirmationParams(tool_use_id=tool_use_id)
                | UserCustomToolResultParams(custom_tool_use_id=tool_use_id)
                | UserToolResultParams(tool_use_id=tool_use_id)
            ):
                if self.own.call_for(tool_use_id) is not None:
                    return self.session.session_id
                return await self._waiting_on(tool_use_id, where) or self.session.session_id
            case _:
                return self.session.session_id

    async def _waiting_on(self, tool_use_id: str, where: str) -> str | None:
        """The one thread of the session where call `tool_use_id` waits, if any."""
        waiting = []
        for thread_id, thread in (await self._threads_of_session()).items():
            if thread.status in TERMINAL_STATUSES or thread.archived_at is not None:
                continue
            if (await self._thread_calls(thread)).call_for(tool_use_id) is not None:
                waiting.append(thread_id)
        if len(waiting) > 1:
            raise ApiProblem(
                409,
                f"{where}: tool use {tool_use_id} waits in threads {', '.join(waiting)}; "
                "name one with session_thread_id",
            )
        return waiting[0] if waiting else None

    async def _thread_calls(self, thread: SessionInfo) -> Projection:
        calls = self._calls.get(thread.session_id)
        if calls is None:
            calls = self._projections.at_most(thread.session_id, thread.head_seq)
            await fold(
                self._services.store, thread.session_id, calls, self._projections, keep=False
            )
            self._calls[thread.session_id] = calls
        return calls

    async def _threads_of_session(self) -> dict[str, SessionInfo]:
        if self._threads is None:
            listed = await self._services.store.list_threads(self.session.session_id)
            self._threads = {thread.session_id: thread for thread in listed}
        return self._threads
