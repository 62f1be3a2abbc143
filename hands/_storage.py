"""What the hands keep of a sandbox beyond its life, in the NATS object store (hands never
touch the session store): workspace checkpoints in `keel-checkpoints` (gzip tar, by sha256,
see `_checkpoint.py`), with the digest of a retired sandbox's final checkpoint under
`final.<sandbox_id>`, and the full output of calls in `keel-blobs` (by sha256).

What a call's outcome names is stored however long NATS is away: the outcome is published
only once it is kept.
"""

from __future__ import annotations

import asyncio
import hashlib

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from hands._checkpoint import fingerprint, pack
from hands._nats import until_nats_has_it
from hands._sandbox import Sandbox
from schemas import (
    BLOB_BUCKET,
    CHECKPOINT_BUCKET,
    FINAL_CHECKPOINT_PREFIX,
    SINGLE,
    BlobRef,
    Replication,
    ensure_bucket_replicas,
)


class SandboxStorage:
    def __init__(self, nc: NATS, blobs: ObjectStore, checkpoints: ObjectStore) -> None:
        self._nc = nc
        self._blobs = blobs
        self._checkpoints = checkpoints

    @classmethod
    async def open(
        cls, nc: NATS, js: JetStreamContext, replication: Replication = SINGLE
    ) -> SandboxStorage:
        """The buckets opened, made, or brought to `replication` (`StreamMismatch` when
        NATS refuses)."""
        return cls(
            nc,
            await _bucket(js, BLOB_BUCKET, replication),
            await _bucket(js, CHECKPOINT_BUCKET, replication),
        )

    async def keep_output(self, data: bytes, preview: str) -> BlobRef:
        """A call's full output as a blob, stored however long NATS is away."""
        return await until_nats_has_it(
            self._nc, "storing its full output", lambda: self._put_blob(data, preview)
        )

    async def keep_checkpoint(self, sandbox: Sandbox) -> None:
        """Checkpoint the workspace after a mutating call, however long NATS is away."""
        await until_nats_has_it(
            self._nc, "storing a workspace checkpoint", lambda: self._checkpoint(sandbox)
        )

    async def keep_final(self, sandbox: Sandbox) -> None:
        """Checkpoint a sandbox about to be removed and name it its final checkpoint, for
        the sandbox that replaces it. One try: the caller keeps the sandbox if it fails."""
        await self._checkpoint(sandbox)
        assert sandbox.checkpoint is not None
        await self._checkpoints.put(
            final_checkpoint_name(sandbox.record.sandbox_id), sandbox.checkpoint.encode()
        )

    async def final_checkpoint(self, sandbox_id: str) -> str | None:
        """The final checkpoint of a sandbox removed for idling, if it was one."""
        try:
            final = await self._checkpoints.get(final_checkpoint_name(sandbox_id))
        except nats.js.errors.ObjectNotFoundError:
            return None
        return final.data.decode() if final.data else None

    async def checkpoint_data(self, checkpoint: str) -> bytes:
        try:
            data = (await self._checkpoints.get(checkpoint)).data
        except nats.js.errors.ObjectNotFoundError as exc:
            raise ValueError(f"no workspace checkpoint {checkpoint!r}") from exc
        assert data is not None
        return data

    async def _checkpoint(self, sandbox: Sandbox) -> None:
        current = await asyncio.to_thread(fingerprint, sandbox.dirs.workspace)
        if current == sandbox.fingerprint and sandbox.checkpoint is not None:
            return
        digest, data = await asyncio.to_thread(pack, sandbox.dirs.workspace)
        if digest != sandbox.checkpoint:
            await self._checkpoints.put(digest, data)
        sandbox.checkpoint = digest
        sandbox.fingerprint = current

    async def _put_blob(self, data: bytes, preview: str) -> BlobRef:
        digest = hashlib.sha256(data).hexdigest()
        await self._blobs.put(digest, data)
        return BlobRef(digest=digest, size=len(data), preview=preview[:2000])


async def _bucket(js: JetStreamContext, name: str, replication: Replication) -> ObjectStore:
    try:
        bucket = await js.object_store(name)
    except (NotFoundError, nats.js.errors.BucketNotFoundError):
        config = ObjectStoreConfig(replicas=replication.replicas, placement=replication.placement)
        return await js.create_object_store(name, config=config)
    await ensure_bucket_replicas(js, f"OBJ_{name}", replication)
    return bucket


def final_checkpoint_name(sandbox_id: str) -> str:
    """The object holding the digest of a retired sandbox's final checkpoint."""
    return f"{FINAL_CHECKPOINT_PREFIX}{sandbox_id}"
