"""Real parts to take away in outage drills: a PostgreSQL cluster of the test's own (so it
can be stopped without touching the machine's), and a small disk of the test's own (an
ext4 image on a loop device) to fill up or to make files on read-only."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.nats_server import free_port

_POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


class PostgresServer:
    """A throwaway cluster on a free loopback port, with trust auth, fsync off (it is the
    outage under test, not the disk). As root it runs as the `postgres` user."""

    def __init__(self) -> None:
        if not _POSTGRES_BIN:
            raise RuntimeError("PostgreSQL's server binaries are not installed")
        self.bin = _POSTGRES_BIN[-1]
        # Not under pytest's 0700 tmp dirs: the postgres user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="keel-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def command(self, tool: str, *args: str) -> list[str]:
        """`tool` of PostgreSQL's, run as the `postgres` user when we are root."""
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return command

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(self.command(tool, *args), check=True, capture_output=True, cwd=self.root)

    def start_command(self) -> list[str]:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200"
        )
        return self.command(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop_command(self) -> list[str]:
        """A fast shutdown: every client connection is cut, as in a restart."""
        return self.command("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def start(self) -> None:
        subprocess.run(self.start_command(), check=True, capture_output=True, cwd=self.root)

    def stop(self) -> None:
        subprocess.run(self.stop_command(), check=True, capture_output=True, cwd=self.root)

    def remove(self) -> None:
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
            user="postgres" if os.geteuid() == 0 else None,
        )
        shutil.rmtree(self.root, ignore_errors=True)


class LoopDisk:
    """A small ext4 filesystem on a loop device, mounted under `mount_point` (needs root)."""

    def __init__(self, mount_point: Path, size_mb: int = 64) -> None:
        self.mount_point = mount_point
        self.image = Path(tempfile.mkdtemp(prefix="keel-disk-")) / "disk.ext4"
        with self.image.open("wb") as image:
            image.truncate(size_mb * 1024 * 1024)
        # -m 0: no blocks reserved for root, so a root process really sees the disk full.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)], check=True)
        mount_point.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-o", "loop", str(self.image), str(mount_point)], check=True)
        self.filler = mount_point / "filler"

    def fill(self) -> None:
        """Take every free block: the next write that needs one fails with ENOSPC."""
        with self.filler.open("wb") as filler:
            # Most of it at once (the file's own block map needs a few blocks too)...
            free = shutil.disk_usage(self.mount_point).free
            os.posix_fallocate(filler.fileno(), 0, max(0, free - 1024 * 1024))
            # ...then the rest, until the disk says no.
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 4096)
                    filler.flush()
                    os.fsync(filler.fileno())

    def unfill(self) -> None:
        self.filler.unlink(missing_ok=True)

    def make_read_only(self, *paths: Path) -> None:
        """Immutable (chattr +i): every write fails, even through descriptors already open
        and even for root, as after an operator's mistake or a failing disk."""
        subprocess.run(["chattr", "+i", *map(str, paths)], check=True)

    def make_writable(self, *paths: Path) -> None:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)

    def remove(self) -> None:
        subprocess.run(["chattr", "-R", "-i", str(self.mount_point)], check=False)
        for _ in range(50):
            if subprocess.run(["umount", str(self.mount_point)], check=False).returncode == 0:
                break
            time.sleep(0.1)
        shutil.rmtree(self.image.parent, ignore_errors=True)
