"""The production sandbox backend: one Docker container per sandbox.

No network, read-only root, writable /workspace, non-root user, no capabilities,
no-new-privileges, memory/CPU/pids limits and an init process. The executor inside listens
on a unix socket in a bind-mounted directory, so a call costs no `docker exec` round trip.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import docker
import docker.errors

from hands._backend import (
    EXECUTOR_SOURCE,
    SANDBOX_UID,
    SandboxDirs,
    SandboxRecord,
    chown_tree,
    executor_command,
)

LABEL = "keel.sandbox"


class DockerBackend:
    name = "docker"

    def __init__(self, image: str) -> None:
        self.image = image
        self._docker = docker.from_env()

    async def prepare(self, dirs: SandboxDirs) -> None:
        # The executor is copied next to the sandbox: the engine resolves bind mounts on its
        # own machine, where a hands host running in a container has no site-packages path.
        await asyncio.to_thread(shutil.copyfile, EXECUTOR_SOURCE, dirs.executor)
        await asyncio.to_thread(chown_tree, dirs.workspace)
        await asyncio.to_thread(chown_tree, dirs.ipc)

    async def start(self, record: SandboxRecord, dirs: SandboxDirs) -> str:
        spec = record.spec
        memory = spec.memory_mb * 1024 * 1024
        options: dict[str, Any] = {
            "command": executor_command("python3", memory),
            "name": f"keel-{record.sandbox_id}",
            "detach": True,
            "network_mode": "default" if spec.network else "none",
            "read_only": True,
            "user": f"{SANDBOX_UID}:{SANDBOX_UID}",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "mem_limit": memory,
            "memswap_limit": memory,
            "nano_cpus": int(spec.cpus * 1e9),
            "pids_limit": spec.pids,
            "init": True,
            "environment": {},
            "working_dir": "/workspace",
            "tmpfs": {"/tmp": "size=64m,mode=1777"},
            "volumes": {
                str(dirs.workspace): {"bind": "/workspace", "mode": "rw"},
                str(dirs.ipc): {"bind": "/keel/ipc", "mode": "rw"},
                str(dirs.executor): {"bind": "/keel/executor.py", "mode": "ro"},
            },
            "labels": {
                LABEL: record.sandbox_id,
                "keel.session": record.session_id,
                "keel.host": record.host_id,
            },
        }
        container = await asyncio.to_thread(
            self._docker.containers.run, spec.image or self.image, **options
        )
        return str(container.id)

    async def alive(self, record: SandboxRecord) -> bool:
        try:
            container = await asyncio.to_thread(self._docker.containers.get, record.handle)
        except docker.errors.NotFound:
            return False
        return bool(container.status == "running")

    async def kill(self, record: SandboxRecord) -> None:
        try:
            container = await asyncio.to_thread(self._docker.containers.get, record.handle)
            await asyncio.to_thread(container.kill)
        except (docker.errors.NotFound, docker.errors.APIError):
            pass

    async def remove(self, record: SandboxRecord) -> None:
        await asyncio.to_thread(self._remove, record.handle)

    async def reap_unknown(self, host_id: str, known: set[str]) -> int:
        containers = await asyncio.to_thread(
            self._docker.containers.list,
            all=True,
            filters={"label": [LABEL, f"keel.host={host_id}"]},
        )
        orphans = [c.id for c in containers if c.id not in known]
        for container_id in orphans:
            await asyncio.to_thread(self._remove, container_id)
        return len(orphans)

    def _remove(self, handle: str) -> None:
        try:
            self._docker.containers.get(handle).remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            # 409: someone is removing it already, which is all we wanted.
            if exc.status_code != 409:
                raise
