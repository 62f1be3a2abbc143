"""Workspace checkpoints: a tarball of the workspace, addressed by its sha256.

Taken after each mutating call (skipped when nothing in the workspace changed), stored in the
NATS object store; a replacement sandbox for the session starts from the latest one.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path


def fingerprint(workspace: Path) -> str:
    """Cheap change detection: every path with its size and mtime."""
    digest = hashlib.sha256()
    for directory, subdirectories, names in os.walk(workspace):
        subdirectories.sort()
        for name in sorted(names):
            path = os.path.join(directory, name)
            try:
                stat = os.lstat(path)
            except FileNotFoundError:
                continue
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_mode}\n".encode())
    return digest.hexdigest()


def pack(workspace: Path) -> tuple[str, bytes]:
    """(digest, gzipped tar) of the workspace, entries in a stable order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for directory, subdirectories, names in os.walk(workspace):
            subdirectories.sort()
            for name in [*sorted(subdirectories), *sorted(names)]:
                path = Path(directory) / name
                archive.add(path, arcname=str(path.relative_to(workspace)), recursive=False)
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest(), data


def unpack(data: bytes, workspace: Path) -> None:
    """Restore a checkpoint into an empty workspace; refuses links or paths leaving it."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        archive.extractall(workspace, filter="data")
