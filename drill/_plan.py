"""What a drill will do, drawn from its seed alone: which fault, after how long, so a run is
repeated by giving its seed again (the system's own timing is not the seed's to fix)."""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Final, Literal

import msgspec

FaultKind = Literal[
    "brain_kill",
    "brain_freeze",
    "hands_kill",
    "sandbox_kill",
    "gateway_kill",
    "nats_restart",
    "store_restart",
    "store_loss",
]
FAULT_KINDS: Final[tuple[FaultKind, ...]] = (
    "brain_kill",
    "brain_freeze",
    "hands_kill",
    "sandbox_kill",
    "gateway_kill",
    "nats_restart",
    "store_restart",
    "store_loss",
)


class PlannedFault(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    kind: FaultKind
    # Quiet time before it, after the previous fault was injected.
    after_s: float
    # Which sandbox to kill, among those alive then, sorted by id (a fraction of the list).
    pick: float


def plan_faults(
    seed: int, count: int, kinds: Collection[FaultKind], gap_s: tuple[float, float]
) -> list[PlannedFault]:
    """`count` faults of `kinds`, each after a gap drawn from `gap_s` (seconds)."""
    rng = random.Random(seed)
    ordered = [kind for kind in FAULT_KINDS if kind in kinds]
    return [
        PlannedFault(
            number=number,
            kind=rng.choice(ordered),
            after_s=rng.uniform(*gap_s),
            pick=rng.random(),
        )
        for number in range(1, count + 1)
    ]
