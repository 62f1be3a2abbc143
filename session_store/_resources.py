"""The Managed Agents API's versioned resources (agents, environments), per tenant.

A resource is a run of versions, one row each, its body the API's JSON as the gateway made
it: the store keeps versions and their order, the gateway their meaning. An update writes
the next version only if the latest is the one the caller read (`expect_version`), in one
transaction, so two concurrent updates never both win. Archiving stamps every version;
deleting removes them all.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from schemas import new_id
from session_store._database import SqlDatabase
from session_store._errors import InvalidInput, ResourceNotFound, VersionConflict
from session_store._records import Resource, ResourcePage
from session_store._tables import resources
from session_store._validate import check_id

MAX_BODY_BYTES = 1024 * 1024


class SqlResources(SqlDatabase):
    """The `Resources` capability over SQL."""

    async def put_resource(
        self,
        tenant: str,
        kind: str,
        body: str,
        *,
        resource_id: str | None = None,
        expect_version: int | None = None,
    ) -> Resource:
        """A new resource (no `resource_id`: version 1, with a new id prefixed by `kind`'s
        prefix) or the next version of one. With `expect_version`, Conflict unless that is
        still its latest version."""
        check_id("tenant", tenant)
        if len(body.encode()) > MAX_BODY_BYTES:
            raise InvalidInput(f"the {kind} is over {MAX_BODY_BYTES} bytes")
        now = self._clock()
        if resource_id is None:
            row = _row(new_id(_PREFIXES.get(kind, kind)), kind, tenant, body, 1, now, now)
            await self._write(lambda conn: conn.execute(insert(resources), row))
            return _resource(row)
        check_id(f"{kind} id", resource_id)

        def next_version(conn: Connection) -> Resource:
            latest = _latest(conn, tenant, kind, resource_id)
            if expect_version is not None and latest.version != expect_version:
                raise VersionConflict(
                    f"{kind} {resource_id} is at version {latest.version}, "
                    f"not {expect_version}: read it again and retry"
                )
            row = _row(resource_id, kind, tenant, body, latest.version + 1, latest.created_at, now)
            row["archived_at"] = latest.archived_at
            conn.execute(insert(resources), row)
            return _resource(row)

        try:
            return await self._write(next_version)
        except IntegrityError as exc:
            # Another update wrote that version first (PostgreSQL, whose writers run at once).
            raise VersionConflict(f"{kind} {resource_id} was updated concurrently; retry") from exc

    async def get_resource(
        self, tenant: str, kind: str, resource_id: str, version: int | None = None
    ) -> Resource:
        """Its latest version, or `version`; ResourceNotFound if there is none (or it is
        another tenant's)."""

        def get(conn: Connection) -> Resource:
            if version is None:
                return _latest(conn, tenant, kind, resource_id)
            row = (
                conn.execute(
                    select(resources).where(
                        resources.c.resource_id == resource_id,
                        resources.c.version == version,
                        resources.c.tenant == tenant,
                        resources.c.kind == kind,
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise ResourceNotFound(kind, resource_id, version)
            return _resource(row)

        return await self._read(get)

    async def list_resources(
        self,
        tenant: str,
        kind: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        include_archived: bool = False,
        created_after: float | None = None,
        created_before: float | None = None,
    ) -> ResourcePage:
        """The latest version of each of a tenant's resources of `kind`, newest first (ids
        are time-ordered); `cursor` is the previous page's `next_cursor`."""
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be 1..1000, got {limit}")
        latest = (
            select(resources.c.resource_id, func.max(resources.c.version).label("version"))
            .where(resources.c.tenant == tenant, resources.c.kind == kind)
            .group_by(resources.c.resource_id)
            .subquery()
        )
        query = select(resources).join(
            latest,
            (resources.c.resource_id == latest.c.resource_id)
            & (resources.c.version == latest.c.version),
        )
        if not include_archived:
            query = query.where(resources.c.archived_at.is_(None))
        if created_after is not None:
            query = query.where(resources.c.created_at >= created_after)
        if created_before is not None:
            query = query.where(resources.c.created_at < created_before)
        if cursor is not None:
            query = query.where(resources.c.resource_id < cursor)
        query = query.order_by(resources.c.resource_id.desc()).limit(limit + 1)

        def page(conn: Connection) -> ResourcePage:
            rows = conn.execute(query).mappings().all()
            items = [_resource(row) for row in rows[:limit]]
            more = len(rows) > limit
            return ResourcePage(items=items, next_cursor=items[-1].resource_id if more else None)

        return await self._read(page)

    async def resource_versions(
        self,
        tenant: str,
        kind: str,
        resource_id: str,
        *,
        limit: int = 20,
        before_version: int | None = None,
    ) -> ResourcePage:
        """Its versions, newest first; `before_version` (the previous page's `next_cursor`)
        pages back through them."""
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be 1..1000, got {limit}")
        query = select(resources).where(
            resources.c.resource_id == resource_id,
            resources.c.tenant == tenant,
            resources.c.kind == kind,
        )
        if before_version is not None:
            query = query.where(resources.c.version < before_version)
        query = query.order_by(resources.c.version.desc()).limit(limit + 1)

        def page(conn: Connection) -> ResourcePage:
            rows = conn.execute(query).mappings().all()
            if not rows and before_version is None:
                raise ResourceNotFound(kind, resource_id)
            items = [_resource(row) for row in rows[:limit]]
            more = len(rows) > limit
            return ResourcePage(items=items, next_cursor=str(items[-1].version) if more else None)

        return await self._read(page)

    async def archive_resource(self, tenant: str, kind: str, resource_id: str) -> Resource:
        """Stamp every version archived (once: archiving again keeps the first time)."""

        def archive(conn: Connection) -> Resource:
            latest = _latest(conn, tenant, kind, resource_id)
            if latest.archived_at is not None:
                return latest
            now = self._clock()
            conn.execute(
                update(resources)
                .where(resources.c.resource_id == resource_id)
                .values(archived_at=now)
            )
            return _latest(conn, tenant, kind, resource_id)

        return await self._write(archive)

    async def delete_resource(self, tenant: str, kind: str, resource_id: str) -> None:
        def remove(conn: Connection) -> None:
            _latest(conn, tenant, kind, resource_id)
            conn.execute(delete(resources).where(resources.c.resource_id == resource_id))

        await self._write(remove)


# The id prefixes of the Managed Agents API's resources.
_PREFIXES = {"agent": "agent", "environment": "env"}


def _latest(conn: Connection, tenant: str, kind: str, resource_id: str) -> Resource:
    row = (
        conn.execute(
            select(resources)
            .where(
                resources.c.resource_id == resource_id,
                resources.c.tenant == tenant,
                resources.c.kind == kind,
            )
            .order_by(resources.c.version.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise ResourceNotFound(kind, resource_id)
    return _resource(row)


def _row(
    resource_id: str,
    kind: str,
    tenant: str,
    body: str,
    version: int,
    created_at: float,
    updated_at: float,
) -> dict[str, object]:
    return {
        "resource_id": resource_id,
        "version": version,
        "kind": kind,
        "tenant": tenant,
        "body": body,
        "created_at": created_at,
        "updated_at": updated_at,
        "archived_at": None,
    }


def _resource(row: object) -> Resource:
    values = dict(row)  # type: ignore[call-overload]
    return Resource(**values)
