"""Tenancy: who may call the API (bearer keys, per tenant; environment keys, per self-hosted
environment) and what a keyed write already answered (Idempotency-Keys, recorded by the
write itself: see `_idempotency.py`)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Connection, exists, insert, select

from schemas import new_id
from session_store._database import SqlDatabase
from session_store._idempotency import recall
from session_store._records import ApiKey, EnvironmentKey, KeyScope, Remembered
from session_store._tables import api_keys, environment_keys, resources
from session_store._validate import check_id


class SqlTenancy(SqlDatabase):
    """`Tenancy` over SQL; a backend composes it with the sessions (`SqlSessionStore`)."""

    # -- API keys ---------------------------------------------------------------------------

    async def create_api_key(self, tenant: str, name: str = "") -> ApiKey:
        """A new bearer key for `tenant`. Keys are 256 random bits, so a plain sha256 is
        enough to keep them unguessable at rest (no salt or slow hash needed)."""
        check_id("tenant", tenant)
        key_id = new_id("key")
        key = f"keel_{secrets.token_urlsafe(32)}"
        row = {
            "key_hash": _key_hash(key),
            "key_id": key_id,
            "tenant": tenant,
            "name": name[:128],
            "created_at": self._clock(),
        }
        await self._write(lambda conn: conn.execute(insert(api_keys), row))
        return ApiKey(key_id=key_id, tenant=tenant, name=name[:128], key=key)

    async def tenant_for_key(self, key: str) -> str | None:
        """The tenant a bearer key belongs to; None for a key nobody issued."""
        query = select(api_keys.c.tenant).where(api_keys.c.key_hash == _key_hash(key))
        return await self._read(lambda conn: conn.execute(query).scalar())

    # -- environment keys -------------------------------------------------------------------

    async def create_environment_key(
        self, tenant: str, environment_id: str, name: str = ""
    ) -> EnvironmentKey:
        """A new key for the worker of `tenant`'s environment `environment_id`: it serves
        that environment's work and sessions only. Made like an API key."""
        check_id("tenant", tenant)
        check_id("environment id", environment_id)
        key_id = new_id("envkey")
        key = f"keel_env_{secrets.token_urlsafe(32)}"
        row = {
            "key_hash": _key_hash(key),
            "key_id": key_id,
            "tenant": tenant,
            "environment_id": environment_id,
            "name": name[:128],
            "created_at": self._clock(),
        }
        await self._write(lambda conn: conn.execute(insert(environment_keys), row))
        return EnvironmentKey(
            key_id=key_id, tenant=tenant, environment_id=environment_id, name=name[:128], key=key
        )

    async def environment_for_key(self, key: str) -> KeyScope | None:
        """What an environment key serves; None for a key nobody issued, or one whose
        environment was deleted."""
        k, r = environment_keys.c, resources.c
        query = select(k.tenant, k.environment_id).where(
            k.key_hash == _key_hash(key),
            exists().where(
                r.resource_id == k.environment_id, r.tenant == k.tenant, r.kind == "environment"
            ),
        )

        def find(conn: Connection) -> KeyScope | None:
            row = conn.execute(query).first()
            return None if row is None else KeyScope(tenant=row[0], environment_id=row[1])

        return await self._read(find)

    # -- idempotency keys -------------------------------------------------------------------

    async def recall(self, tenant: str, key: str) -> Remembered | None:
        """What `key` of `tenant` answered, recorded with its write's effect; None if no write
        with it has committed (none ran, or one is still running: it records on commit)."""
        return await self._read(lambda conn: recall(conn, tenant, key))


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
