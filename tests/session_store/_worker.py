"""A store client run as its own OS process by the process-level tests.

    python -m tests.session_store._worker race URL SESSION EPOCH NAME ROUNDS
    python -m tests.session_store._worker append URL SESSION OWNER
    python -m tests.session_store._worker zombie URL SESSION OWNER

Each prints one line per outcome and flushes it at once, so the parent knows exactly what
was acknowledged before it killed the process.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

from schemas import UserMessage
from session_store import Conflict, EventStore, Fenced, open_store


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def race(store: EventStore, sid: str, epoch: int, name: str, rounds: int) -> None:
    """Every round: read the head, append at it. Racing processes read the same head."""
    for _ in range(rounds):
        head = await store.head(sid)
        try:
            appended = await store.append(sid, [UserMessage(text=f"{name}@{head}")], head, epoch)
        except Conflict:
            say("lost")
        else:
            say(f"won {appended.head_seq}")


async def append_forever(store: EventStore, sid: str, owner: str) -> None:
    """Appends groups of 1-3 events until killed; prints each group once it is acknowledged."""
    lease = await store.claim(sid, owner, ttl=60)
    head = lease.head_seq
    rng = random.Random()
    while True:
        size = rng.randint(1, 3)
        tag = f"{time.monotonic_ns()}"
        group = [UserMessage(text=f"{tag} {i}/{size}") for i in range(size)]
        head = (await store.append(sid, group, head, lease.epoch)).head_seq
        say(f"ack {head} {tag} {size}")


async def zombie(store: EventStore, sid: str, owner: str) -> None:
    """Appends on a short lease it never renews (as a paused process would) until another
    owner takes the session; then keeps trying: every later append must be refused too."""
    lease = await store.claim(sid, owner, ttl=0.5)
    say(f"claimed {lease.epoch}")
    head = lease.head_seq
    fenced = 0
    while fenced < 20:
        try:
            appended = await store.append(
                sid, [UserMessage(text=f"zombie@{head}")], head, lease.epoch
            )
            head = appended.head_seq
            say(f"ack {head}")
        except Fenced:
            fenced += 1
            say("fenced")
            head = await store.head(sid)
        await asyncio.sleep(0.005)


async def main(argv: list[str]) -> None:
    command, url, sid, *rest = argv
    store = open_store(url)
    try:
        if command == "race":
            epoch, name, rounds = rest
            # A barrier: every racer is up before any starts, however slow the machine.
            say("ready")
            await asyncio.to_thread(sys.stdin.readline)
            await race(store, sid, int(epoch), name, int(rounds))
        elif command == "append":
            await append_forever(store, sid, rest[0])
        elif command == "zombie":
            await zombie(store, sid, rest[0])
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
