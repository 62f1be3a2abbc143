"""`python -m brain`: run a brain until SIGINT/SIGTERM (configured by `KEEL_*` variables)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from brain.service import Brain
from brain.settings import BrainSettings
from schemas import SettingsError, configure_logging, settings_from_env

CLOSE_TIMEOUT_S = 5.0


async def run(settings: BrainSettings) -> None:
    brain = Brain(settings)
    await brain.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"brain {settings.brain_id} ready", flush=True)
    await stop.wait()
    try:
        await asyncio.wait_for(brain.close(), CLOSE_TIMEOUT_S)
    except TimeoutError:
        # Say what hung, then exit anyway: whatever was in flight, the log has it.
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m brain", description=__doc__)
    parser.add_argument("--store-url", help="session store (default: KEEL_STORE_URL)")
    parser.add_argument("--nats-url", help="NATS server (default: KEEL_NATS_URL)")
    parser.add_argument("--brain-id", help="lease owner name (default: KEEL_BRAIN_ID)")
    args = parser.parse_args()
    try:
        settings = settings_from_env(
            BrainSettings,
            overrides={
                "store_url": args.store_url,
                "nats_url": args.nats_url,
                "brain_id": args.brain_id,
            },
        )
    except SettingsError as exc:
        parser.error(str(exc))
    configure_logging("brain", settings.brain_id, settings.log)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
