"""A self-hosted environment's work queue (the Managed Agents `environments.work`), over SQL.

Work is derived, never announced. A session needs its environment's worker while its row
says it waits for the client's tool results (`WAITING_FOR_CLIENT`) and it is not archived.
Before an operation reads an environment's queue, the queue is brought in line with its
sessions in one transaction (`_refresh`): a session that needs a worker and has no live item
gets a queued one; a live item nobody holds (never taken, or its lease lapsed) whose session
no longer needs a worker is stopped; a lapsed item whose session still needs one is queued
again, with no heartbeat, for another worker. No notification can be lost and no gateway
keeps any of it: whatever crashed, the next poll, on any gateway, finds the queue right.

An item's life: `queued` (a poll hands it to a worker; handed out again if nobody
acknowledges it within the poll's reclaim time) → `starting` (acknowledged: leased for `ttl`)
→ `active` (each heartbeat names the one before it, a compare-and-set, and extends the
lease) → `stopping` (a graceful stop, seen by the worker's next heartbeat) → `stopped`. At
most one live item per session: a unique column (`live_session`) says so, whichever
gateways derive at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

import msgspec
from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from schemas import TERMINAL_STATUSES, WAITING_FOR_CLIENT, new_id
from session_store._database import SqlDatabase
from session_store._errors import (
    HeartbeatMismatch,
    InvalidInput,
    ResourceNotFound,
    StoreUnavailable,
    WorkStateConflict,
)
from session_store._records import WorkItem, WorkLease, WorkPage, WorkStats
from session_store._tables import sessions, work_items, work_pollers
from session_store._validate import check_id

T = TypeVar("T")

# The API's default: an item a poll handed out and nobody acknowledged is handed out again
# after this long.
RECLAIM_AFTER_S: Final = 5.0
# `workers_polling` counts the workers that polled this recently (the API's window).
POLLERS_WINDOW_S: Final = 30.0
# A worker's poll is recorded at most this often: an empty poll writes nothing otherwise.
_RECORD_POLLER_EVERY_S: Final = 10.0
# A worker that has not polled for this long is forgotten (each worker process has its own
# id, so dead ones would pile up).
_FORGET_POLLER_AFTER_S: Final = 3600.0
MAX_METADATA: Final = 16
_HELD: Final = ("starting", "active", "stopping")
# Attempts of a write that derives items, when another gateway derived the same one first.
_DERIVE_ATTEMPTS: Final = 3
_METADATA: Final = msgspec.json.Encoder()
_METADATA_DECODER: Final = msgspec.json.Decoder(dict[str, str])


class _Queue:
    """One environment's queue at `now`: which of its items and sessions each step of
    `_refresh` and each poll concerns. Built once per operation, so the check that decides
    whether to write and the writes themselves use the very same conditions."""

    def __init__(self, tenant: str, environment_id: str, now: float, reclaim_after: float) -> None:
        w = work_items.c
        self.now = now
        self.tenant, self.environment_id = tenant, environment_id
        self.items = and_(w.tenant == tenant, w.environment_id == environment_id)
        needed = _needs_worker(w.session_id)
        lapsed = and_(w.state.in_(_HELD), w.lease_until < now)
        self.stale = or_(
            and_(w.state == "queued", ~needed),
            and_(lapsed, or_(w.state == "stopping", ~needed)),
        )
        self.lapsed_but_needed = and_(lapsed, w.state != "stopping", needed)
        self.claimable = and_(
            w.state == "queued", or_(w.polled_at.is_(None), w.polled_at <= now - reclaim_after)
        )
        self.pending = and_(w.state == "queued", w.polled_at > now - reclaim_after)
        s = sessions.c
        self.unserved = select(s.session_id).where(
            s.tenant == tenant,
            s.environment_id == environment_id,
            _waits_for_client(),
            ~exists().where(w.live_session == s.session_id),
        )

    def out_of_line(self) -> ColumnElement[bool]:
        """Whether `_refresh` would change anything."""
        return or_(
            exists().where(self.items, self.stale),
            exists().where(self.items, self.lapsed_but_needed),
            self.unserved.exists(),
        )

    def has_claimable(self) -> ColumnElement[bool]:
        return exists().where(self.items, self.claimable)


def _waits_for_client() -> ColumnElement[bool]:
    s = sessions.c
    return and_(
        s.status == "waiting", s.status_reason == WAITING_FOR_CLIENT, s.archived_at.is_(None)
    )


def _needs_worker(session_id: ColumnElement[str]) -> ColumnElement[bool]:
    return exists().where(sessions.c.session_id == session_id, _waits_for_client())


def _refresh(conn: Connection, queue: _Queue) -> None:
    now = queue.now
    conn.execute(
        update(work_items)
        .where(queue.items, queue.stale)
        .values(state="stopped", stopped_at=now, live_session=None, lease_until=None)
    )
    conn.execute(
        update(work_items)
        .where(queue.items, queue.lapsed_but_needed)
        .values(
            state="queued",
            polled_at=None,
            worker_id=None,
            acknowledged_at=None,
            started_at=None,
            heartbeat_us=None,
            lease_until=None,
        )
    )
    for session_id in conn.execute(queue.unserved).scalars().all():
        conn.execute(
            insert(work_items),
            {
                "work_id": new_id("work", now=now),
                "tenant": queue.tenant,
                "environment_id": queue.environment_id,
                "session_id": session_id,
                "live_session": session_id,
                "state": "queued",
                "metadata": "{}",
                "created_at": now,
                "ttl_s": 0,
            },
        )


class SqlWork(SqlDatabase):
    """The `WorkQueue` over SQL."""

    async def poll_work(
        self,
        tenant: str,
        environment_id: str,
        *,
        worker_id: str | None = None,
        reclaim_after: float = RECLAIM_AFTER_S,
    ) -> WorkItem | None:
        """Hand the oldest claimable item of the environment to `worker_id`, or None. A poll
        that finds nothing to hand out or to bring in line is a read only."""
        if worker_id is not None and not 1 <= len(worker_id) <= 128:
            raise InvalidInput("a worker id is 1 to 128 characters")

        def due(conn: Connection) -> bool:
            queue = self._queue(tenant, environment_id, reclaim_after)
            checks = [queue.out_of_line(), queue.has_claimable()]
            if worker_id is not None:
                checks.append(
                    ~exists().where(
                        work_pollers.c.environment_id == environment_id,
                        work_pollers.c.worker_id == worker_id,
                        work_pollers.c.polled_at > queue.now - _RECORD_POLLER_EVERY_S,
                    )
                )
            return bool(conn.execute(select(or_(*checks))).scalar())

        def poll(conn: Connection) -> WorkItem | None:
            queue = self._queue(tenant, environment_id, reclaim_after)
            if worker_id is not None:
                _record_poller(conn, environment_id, worker_id, queue.now)
            _refresh(conn, queue)
            w = work_items.c
            candidates = conn.execute(
                select(w.work_id)
                .where(queue.items, queue.claimable)
                .order_by(w.created_at, w.work_id)
                .limit(8)
            ).scalars()
            for work_id in candidates.all():
                # A compare-and-set: another gateway's poll may have taken it meanwhile.
                row = (
                    conn.execute(
                        update(work_items)
                        .where(w.work_id == work_id, queue.claimable)
                        .values(polled_at=queue.now, worker_id=worker_id)
                        .returning(*work_items.c)
                    )
                    .mappings()
                    .first()
                )
                if row is not None:
                    return _item(row)
            return None

        if not await self._read(due):
            return None
        return await self._deriving(poll)

    async def ack_work(
        self, tenant: str, environment_id: str, work_id: str, *, ttl: int
    ) -> WorkItem:
        """The worker a poll handed the item to takes it: `starting`, leased for `ttl`
        seconds. Acknowledging a `starting` item again answers it as it is (a retried ack);
        any other state is a WorkStateConflict."""

        def ack(conn: Connection) -> WorkItem:
            now = self._clock()
            w = work_items.c
            row = (
                conn.execute(
                    update(work_items)
                    .where(
                        _one(tenant, environment_id, work_id),
                        w.state == "queued",
                        w.polled_at.is_not(None),
                    )
                    .values(state="starting", acknowledged_at=now, lease_until=now + ttl, ttl_s=ttl)
                    .returning(*work_items.c)
                )
                .mappings()
                .first()
            )
            if row is not None:
                return _item(row)
            current = _get(conn, tenant, environment_id, work_id)
            if current.state == "starting":
                return current
            if current.state == "queued":
                raise WorkStateConflict(f"work {work_id!r} was not handed out by a poll yet")
            raise WorkStateConflict(f"work {work_id!r} is {current.state}, not queued")

        return await self._write(ack)

    async def heartbeat_work(
        self,
        tenant: str,
        environment_id: str,
        work_id: str,
        *,
        ttl: int,
        expected: int | None,
        check: bool = True,
    ) -> WorkLease:
        """Extend the item's lease by `ttl` seconds, if its last heartbeat is `expected`
        (None: it has had none) or `check` is False; HeartbeatMismatch otherwise, or when
        nobody holds it. A stopping or stopped item is not compared: its lease is not
        extended, which tells its worker to stop. An item whose session is gone, ended or
        archived becomes `stopping` the same way."""

        def heartbeat(conn: Connection) -> WorkLease:
            now = self._clock()
            current = _get(conn, tenant, environment_id, work_id, for_update=True)
            if current.state in ("stopping", "stopped"):
                return _lease(current, extended=False)
            if current.state == "queued" or (check and current.heartbeat_us != expected):
                raise HeartbeatMismatch(work_id, _lease(current, extended=False))
            one = work_items.c.work_id == work_id
            if not _serves_a_live_session(conn, current.session_id):
                conn.execute(
                    update(work_items).where(one).values(state="stopping", stop_requested_at=now)
                )
                return WorkLease(
                    state="stopping",
                    heartbeat_us=current.heartbeat_us,
                    extended=False,
                    ttl_s=current.ttl_s,
                )
            # Strictly after the last one, so no two heartbeats of an item are the same.
            beat = max(int(now * 1_000_000), (current.heartbeat_us or 0) + 1)
            conn.execute(
                update(work_items)
                .where(one)
                .values(
                    state="active",
                    started_at=current.started_at if current.started_at is not None else now,
                    heartbeat_us=beat,
                    lease_until=now + ttl,
                    ttl_s=ttl,
                )
            )
            return WorkLease(state="active", heartbeat_us=beat, extended=True, ttl_s=ttl)

        return await self._write(heartbeat)

    async def stop_work(
        self, tenant: str, environment_id: str, work_id: str, *, force: bool
    ) -> WorkItem:
        """Stop the item: at once if `force` or nobody acknowledged it, else `stopping`
        until its worker stops it. WorkStateConflict if it is stopped already."""

        def stop(conn: Connection) -> WorkItem:
            now = self._clock()
            current = _get(conn, tenant, environment_id, work_id, for_update=True)
            if current.state == "stopped":
                raise WorkStateConflict(f"work {work_id!r} is stopped already")
            requested = current.stop_requested_at or now
            values: dict[str, object]
            if force or current.state == "queued":
                values = {
                    "state": "stopped",
                    "stop_requested_at": requested,
                    "stopped_at": now,
                    "live_session": None,
                    "lease_until": None,
                }
            else:
                values = {"state": "stopping", "stop_requested_at": requested}
            row = (
                conn.execute(
                    update(work_items)
                    .where(work_items.c.work_id == work_id)
                    .values(**values)
                    .returning(*work_items.c)
                )
                .mappings()
                .one()
            )
            return _item(row)

        return await self._write(stop)

    async def get_work(self, tenant: str, environment_id: str, work_id: str) -> WorkItem:
        return await self._read(lambda conn: _get(conn, tenant, environment_id, work_id))

    async def patch_work_metadata(
        self, tenant: str, environment_id: str, work_id: str, patch: dict[str, str | None]
    ) -> WorkItem:
        """Set the patch's keys, remove those it sends as None; at most `MAX_METADATA`
        (WorkStateConflict past them: the same patch fits once keys are removed)."""

        def patched(conn: Connection) -> WorkItem:
            current = _get(conn, tenant, environment_id, work_id, for_update=True)
            merged = {**current.metadata, **{k: v for k, v in patch.items() if v is not None}}
            for key in [k for k, v in patch.items() if v is None]:
                merged.pop(key, None)
            if len(merged) > MAX_METADATA:
                raise WorkStateConflict(
                    f"metadata: at most {MAX_METADATA} pairs; work {work_id!r} has "
                    f"{len(current.metadata)}, and this patch would make {len(merged)}"
                )
            row = (
                conn.execute(
                    update(work_items)
                    .where(work_items.c.work_id == work_id)
                    .values(metadata=_METADATA.encode(merged).decode())
                    .returning(*work_items.c)
                )
                .mappings()
                .one()
            )
            return _item(row)

        return await self._write(patched)

    async def list_work(
        self, tenant: str, environment_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> WorkPage:
        """The environment's items, newest first (ids are time-ordered); `cursor` is the
        previous page's `next_cursor`."""
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be 1..1000, got {limit}")
        await self._bring_in_line(tenant, environment_id)
        w = work_items.c
        query = select(work_items).where(w.tenant == tenant, w.environment_id == environment_id)
        if cursor is not None:
            query = query.where(w.work_id < cursor)
        query = query.order_by(w.work_id.desc()).limit(limit + 1)

        def page(conn: Connection) -> WorkPage:
            rows = conn.execute(query).mappings().all()
            items = [_item(row) for row in rows[:limit]]
            more = len(rows) > limit
            return WorkPage(items=items, next_cursor=items[-1].work_id if more else None)

        return await self._read(page)

    async def work_stats(self, tenant: str, environment_id: str) -> WorkStats:
        await self._bring_in_line(tenant, environment_id)

        def stats(conn: Connection) -> WorkStats:
            queue = self._queue(tenant, environment_id, RECLAIM_AFTER_S)
            w = work_items.c
            counts = conn.execute(
                select(
                    func.count().filter(queue.claimable),
                    func.count().filter(queue.pending),
                    func.min(w.created_at).filter(w.state == "queued"),
                ).where(queue.items)
            ).one()
            polling = conn.execute(
                select(func.count()).where(
                    work_pollers.c.environment_id == environment_id,
                    work_pollers.c.polled_at > queue.now - POLLERS_WINDOW_S,
                )
            ).scalar_one()
            return WorkStats(
                depth=counts[0],
                pending=counts[1],
                oldest_queued_at=counts[2],
                workers_polling=polling,
            )

        return await self._read(stats)

    # -- helpers ----------------------------------------------------------------------------

    def _queue(self, tenant: str, environment_id: str, reclaim_after: float) -> _Queue:
        check_id("tenant", tenant)
        check_id("environment id", environment_id)
        return _Queue(tenant, environment_id, self._clock(), reclaim_after)

    async def _bring_in_line(self, tenant: str, environment_id: str) -> None:
        """`_refresh` the queue, if it is out of line (a read, most of the time)."""

        def due(conn: Connection) -> bool:
            queue = self._queue(tenant, environment_id, RECLAIM_AFTER_S)
            return bool(conn.execute(select(queue.out_of_line())).scalar())

        if await self._read(due):
            await self._deriving(
                lambda conn: _refresh(conn, self._queue(tenant, environment_id, RECLAIM_AFTER_S))
            )

    async def _deriving(self, operation: Callable[[Connection], T]) -> T:
        """Run a write that derives items: one that loses a race to derive the same item
        (PostgreSQL, whose writers run at once) runs again, on the queue as it now is."""
        for _ in range(_DERIVE_ATTEMPTS - 1):
            try:
                return await self._write(operation)
            except IntegrityError:
                continue
        try:
            return await self._write(operation)
        except IntegrityError as exc:
            raise StoreUnavailable(f"deriving work kept racing: {exc.orig!r}") from exc


def _record_poller(conn: Connection, environment_id: str, worker_id: str, now: float) -> None:
    p = work_pollers.c
    mine = and_(p.environment_id == environment_id, p.worker_id == worker_id)
    if not conn.execute(update(work_pollers).where(mine).values(polled_at=now)).rowcount:
        conn.execute(
            insert(work_pollers),
            {"environment_id": environment_id, "worker_id": worker_id, "polled_at": now},
        )
    conn.execute(
        delete(work_pollers).where(
            p.environment_id == environment_id, p.polled_at < now - _FORGET_POLLER_AFTER_S
        )
    )


def _serves_a_live_session(conn: Connection, session_id: str) -> bool:
    s = sessions.c
    row = conn.execute(select(s.status, s.archived_at).where(s.session_id == session_id)).first()
    return row is not None and row[0] not in TERMINAL_STATUSES and row[1] is None


def _one(tenant: str, environment_id: str, work_id: str) -> ColumnElement[bool]:
    w = work_items.c
    return and_(w.work_id == work_id, w.tenant == tenant, w.environment_id == environment_id)


def _get(
    conn: Connection, tenant: str, environment_id: str, work_id: str, *, for_update: bool = False
) -> WorkItem:
    query = select(work_items).where(_one(tenant, environment_id, work_id))
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise ResourceNotFound("work", work_id)
    return _item(row)


def _lease(item: WorkItem, *, extended: bool) -> WorkLease:
    return WorkLease(
        state=item.state, heartbeat_us=item.heartbeat_us, extended=extended, ttl_s=item.ttl_s
    )


def _item(row: object) -> WorkItem:
    values = dict(row)  # type: ignore[call-overload]
    del values["live_session"]
    values["metadata"] = _METADATA_DECODER.decode(values["metadata"])
    return WorkItem(**values)
