"""`python -m hands`: run a hands host until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from hands._backend import SandboxBackend
from hands._host import HandsHost
from hands._local import LocalBackend
from hands._settings import HandsSettings
from schemas import SettingsError, configure_logging


def make_backend(settings: HandsSettings) -> SandboxBackend:
    if settings.backend == "docker":
        from hands._docker import DockerBackend

        return DockerBackend(settings.docker_image)
    return LocalBackend(settings.local_isolation)


async def run(settings: HandsSettings) -> None:
    host = HandsHost(settings, make_backend(settings))
    await host.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"hands host {settings.host_id} ready ({settings.backend} sandboxes)", flush=True)
    await stop.wait()
    await host.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m hands", description=__doc__)
    parser.add_argument("--nats-url", help="NATS server (default: KEEL_NATS_URL)")
    parser.add_argument("--data-dir", type=Path, help="where sandboxes live (KEEL_HANDS_DIR)")
    parser.add_argument("--backend", choices=["local", "docker"])
    parser.add_argument("--host-id")
    parser.add_argument("--warm-pool", type=int)
    args = parser.parse_args()
    try:
        settings = HandsSettings.from_env(
            nats_url=args.nats_url,
            data_dir=args.data_dir,
            backend=args.backend,
            host_id=args.host_id,
            warm_pool=args.warm_pool,
        )
    except SettingsError as exc:
        parser.error(str(exc))
    configure_logging("hands", settings.host_id, settings.log)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
