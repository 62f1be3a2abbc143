"""A drill from start to report: sessions run, faults land, then everything is checked."""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx2
import msgspec

from drill._effects import check_effects
from drill._faults import InjectedFault, inject
from drill._invariants import Violation, check_log
from drill._plan import plan_faults
from drill._report import Report, figures_by_kind
from drill._sandboxes import containers_left, sandboxes_left
from drill._targets import Endpoints, Target
from drill._workload import Workload
from schemas import TERMINAL_STATUSES, Recorded, ToolRequested
from session_store import EventStore, SessionInfo, open_store

# Statuses a session may be left in: it waits for its user, or it is over.
SETTLED = TERMINAL_STATUSES | {"idle"}


class DrillOptions(msgspec.Struct, frozen=True, kw_only=True):
    seed: int
    faults: int
    # Sessions running at once.
    sessions: int = 3
    # Quiet time between faults, drawn from this range (seconds).
    gap_s: tuple[float, float] = (0.5, 2.0)
    # After the last fault, how long every session has to settle.
    settle_s: float = 180.0


async def run_drill(target: Target, options: DrillOptions, name: str) -> Report:
    endpoints = target.endpoints
    kinds = target.kinds()
    plan = plan_faults(options.seed, options.faults, kinds, options.gap_s)
    started = time.monotonic()
    headers = {"authorization": f"Bearer {endpoints.api_key}"}
    async with httpx2.AsyncClient(base_url=endpoints.http_url, headers=headers) as http:
        workload = Workload(http, uuid.uuid4().hex[:8], options.sessions)
        running = asyncio.create_task(workload.run())
        injected: list[InjectedFault] = []
        try:
            for planned in plan:
                await asyncio.sleep(planned.after_s)
                injected.append(await inject(planned, target))
            workload.stop_creating.set()
            try:
                await asyncio.wait_for(asyncio.shield(running), options.settle_s)
            except TimeoutError:
                workload.give_up.set()
                await running
        finally:
            workload.stop_creating.set()
            workload.give_up.set()
            await running
    duration_s = time.monotonic() - started

    store = open_store(endpoints.store_url)
    try:
        checked = await _check_sessions(store, workload, endpoints.lease_s)
    finally:
        await store.close()
    violations, logs, infos = checked
    notes = []
    if endpoints.hands_dir:
        ended = {i.session_id for i in infos if i.status in TERMINAL_STATUSES}
        violations += await _leftovers(endpoints, ended)
    else:
        notes.append("no hands_dir: sandboxes were neither killed nor checked for leftovers")
    _measure_recovery(injected, logs)
    return Report(
        ok=not violations,
        seed=options.seed,
        target=name,
        faults_asked=options.faults,
        duration_s=duration_s,
        faults_per_minute=len(injected) / duration_s * 60 if duration_s else 0.0,
        by_kind=figures_by_kind(injected),
        sessions=len(infos),
        statuses=dict(Counter(i.status for i in infos)),
        events=sum(len(log) for log in logs),
        tool_calls=sum(isinstance(r.event, ToolRequested) for log in logs for r in log),
        stream_reconnects=sum(w.reconnects for w in workload.watches),
        violations=violations,
        faults=injected,
        notes=notes,
    )


async def _check_sessions(
    store: EventStore, workload: Workload, lease_s: float
) -> tuple[list[Violation], list[list[Recorded]], list[SessionInfo]]:
    violations: list[Violation] = []
    logs: list[list[Recorded]] = []
    infos: list[SessionInfo] = []
    for watch in workload.watches:
        session_id = watch.session_id
        info = await store.get_session(session_id)
        infos.append(info)
        log, found = await check_log(store, session_id)
        logs.append(log)
        violations += found
        violations += check_effects(session_id, log)
        violations += watch.violations
        if info.status not in SETTLED:
            owner = info.lease_owner or "no owner"
            expired = info.lease_until is None or info.lease_until < time.time() - lease_s
            violations.append(
                Violation(
                    kind="stuck_without_owner" if expired else "not_settled",
                    session_id=session_id,
                    detail=f"{info.status} at seq {info.head_seq}, lease of {owner}",
                    seq=info.head_seq,
                )
            )
        elif watch.last_seq != info.head_seq and info.status in TERMINAL_STATUSES:
            violations.append(
                Violation(
                    kind="stream_short",
                    session_id=session_id,
                    detail=f"the stream ended at seq {watch.last_seq} of {info.head_seq}",
                    seq=watch.last_seq + 1,
                )
            )
    return violations, logs, infos


async def _leftovers(endpoints: Endpoints, ended: set[str]) -> list[Violation]:
    """Sandboxes (and, with Docker, containers) of ended sessions still there once the
    hands had time to ask about them: a few of their checks, and the removal itself."""
    hands_dir = Path(endpoints.hands_dir)
    docker = endpoints.sandbox == "docker"

    def look() -> list[tuple[str, str]]:
        left = [(r.session_id, f"sandbox {r.sandbox_id}") for r in sandboxes_left(hands_dir, ended)]
        if docker:
            left += [(session, f"container {c}") for session, c in containers_left(ended)]
        return left

    deadline = time.monotonic() + 3 * endpoints.sandbox_check_s + 15.0
    left = await asyncio.to_thread(look)
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        left = await asyncio.to_thread(look)
    return [
        Violation(kind="left_behind", session_id=session, detail=f"{what} outlived its session")
        for session, what in left
    ]


def _measure_recovery(faults: list[InjectedFault], logs: list[list[Recorded]]) -> None:
    """Each fault's time to the next event any drill session committed after it began."""
    times = sorted(r.at for log in logs for r in log)
    for fault in faults:
        index = bisect.bisect_right(times, fault.at)
        fault.recovery_s = times[index] - fault.at if index < len(times) else None
