"""Adoption, when a host starts: the sandboxes an earlier incarnation of it left behind.

Each recorded sandbox of this host's backend that is alive, of this host's layout (an
executor of another layout speaks another protocol) and answers is adopted: a warm one goes
back into the pool, any other is served again, with the calls its dead host sent collected
(`CallRunner.resume`). Every other recorded one is removed, and so are this host's orphans
nobody recorded and the directories a host killed while creating a sandbox left without a
record.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

import msgspec

from hands._backend import LAYOUT, SandboxDirs, SandboxRecord, stored_layout
from hands._calls import CallRunner
from hands._client import ExecutorClient, SandboxLost
from hands._hosted import HostedSandboxes
from hands._sandbox import Sandbox
from hands._subjects import SandboxSubjects

log = logging.getLogger("keel.hands")


async def adopt_or_remove_leftovers(
    hosted: HostedSandboxes, calls: CallRunner, subjects: SandboxSubjects
) -> None:
    """Sandboxes a previous host left: adopt the live ones, remove the rest."""
    backend, root = hosted.backend, hosted.root
    known: set[str] = set()
    for path in sorted(root.glob("*/record.json")):
        dirs = SandboxDirs(root, path.parent.name)
        try:
            data = path.read_bytes()
            record = msgspec.json.decode(data, type=SandboxRecord)
            layout = stored_layout(data)
        except msgspec.DecodeError:
            shutil.rmtree(dirs.root, ignore_errors=True)
            continue
        if record.backend != backend.name:
            continue
        adopted = False
        # An executor of another layout speaks another protocol: never adopted.
        if layout == LAYOUT and await backend.alive(record):
            try:
                client = await ExecutorClient.connect(dirs.socket, within_s=2.0)
                await client.ping()
                sandbox = Sandbox(record=record, dirs=dirs, client=client)
                if record.session_id == "warm":
                    hosted.keep_warm(sandbox)
                else:
                    calls.resume(sandbox)
                    await subjects.serve(sandbox)
                hosted.watch(sandbox)
                adopted = True
                known.add(record.handle)
                log.info("adopted sandbox %s", record.sandbox_id)
            except SandboxLost:
                pass
        if not adopted:
            await hosted.discard(record, dirs)
            log.info("removed sandbox %s left by a dead host", record.sandbox_id)
    orphans = await backend.reap_unknown(hosted.settings.host_id, known)
    if orphans:
        log.info("removed %d orphaned sandboxes", orphans)
    # A host killed while creating a sandbox leaves its directory without a record (its
    # process or container, which carries this host's id, was reaped just above).
    for directory in sorted(root.iterdir()):
        if directory.is_dir() and not (directory / "record.json").exists():
            await asyncio.to_thread(shutil.rmtree, directory, True)
            log.info("removed sandbox directory %s, never recorded", directory.name)
