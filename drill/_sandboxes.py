"""The sandboxes a hands host keeps in its data directory: to kill one mid-call, and to find
the ones a finished session left behind.

A drill runs on the hands' machine for these (it reads the host's records, as a host that
starts after a crash does); without `hands_dir` it skips both and says so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import msgspec

from hands import LocalBackend, SandboxBackend, SandboxRecord


def sandbox_backend(kind: str) -> SandboxBackend:
    if kind == "docker":
        from hands._docker import DockerBackend  # the docker SDK only where it is used

        return DockerBackend(image="")  # kill and remove never start a container
    return LocalBackend()


def sandbox_records(hands_dir: Path) -> list[SandboxRecord]:
    """Every sandbox the hosts keep in `hands_dir`, by id."""
    records = []
    for path in sorted((hands_dir / "sandboxes").glob("*/record.json")):
        try:
            records.append(msgspec.json.decode(path.read_bytes(), type=SandboxRecord))
        except (OSError, msgspec.DecodeError):
            continue  # removed, or being written, as we looked
    return records


async def kill_sandbox(hands_dir: Path, backend: SandboxBackend, pick: float) -> str:
    """SIGKILL every process of one live sandbox (the `pick` fraction of the list): the
    sandbox dies as under the OOM killer. Returns its id, or "" when none is alive."""
    alive = [r for r in sandbox_records(hands_dir) if await backend.alive(r)]
    if not alive:
        return ""
    record = alive[min(int(pick * len(alive)), len(alive) - 1)]
    await backend.kill(record)
    return record.sandbox_id


def sandboxes_left(hands_dir: Path, ended: set[str]) -> list[SandboxRecord]:
    """The sandboxes whose directory is still kept for sessions that ended."""
    return [r for r in sandbox_records(hands_dir) if r.session_id in ended]


def containers_left(ended: set[str]) -> list[tuple[str, str]]:
    """Docker containers of keel's sandboxes (by their `keel.session` label) whose session
    ended: (session id, container id). The hands' directory cannot show a container whose
    record is gone."""
    columns = '{{.Label "keel.session"}} {{.ID}}'
    listed = subprocess.run(
        ["docker", "ps", "-a", "--filter", "label=keel.sandbox", "--format", columns],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    pairs = [line.split() for line in listed.stdout.splitlines() if line.strip()]
    return [(pair[0], pair[1]) for pair in pairs if len(pair) == 2 and pair[0] in ended]
