"""Golden logs: sessions recorded from real runs, which must replay to the same decisions
forever (the habit of Temporal's replayer).

`<name>.jsonl` is one session's log as the store keeps it, one event a line:
`{"seq", "at", "type", "data"}`. Beside it, `<name>.expected.json` is how the brain reads that
history: after folding each event, the decision `decide(state, at)` (at that event's own
time), and the state at the end. `tests/brain/test_golden.py` replays every log through the
real `fold` and `decide` and compares, so a change to the reducer or to decide that alters
how a recorded history is read fails there.

When such a change is meant (a field added with a default, a meaning changed with
STATE_VERSION bumped), regenerate the expected files deliberately and review their diff in
the same commit:

    .venv/bin/python -m tests.golden.golden            # every log
    .venv/bin/python -m tests.golden.golden coding     # one

Never regenerate them to make a failing test pass: the diff is what the test is for. The logs
themselves are recorded by `python -m tests.golden.record` (real NATS, hands and brains).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from brain import decide, fold, initial_state
from schemas import Recorded, decode_event

GOLDEN_DIR: Final = Path(__file__).parent


class Row(msgspec.Struct, frozen=True):
    """One line of a golden log: an event as the store keeps it (`data` byte for byte)."""

    seq: int
    at: float
    type: str
    data: msgspec.Raw


class Decision(msgspec.Struct, frozen=True):
    seq: int
    action: Any


class Expected(msgspec.Struct, frozen=True):
    decisions: list[Decision]
    state: Any


_ROW: Final = msgspec.json.Decoder(Row)


def names() -> list[str]:
    return sorted(path.name.removesuffix(".jsonl") for path in GOLDEN_DIR.glob("*.jsonl"))


def log_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.jsonl"


def expected_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.expected.json"


def read_log(name: str) -> list[Recorded]:
    rows = [_ROW.decode(line) for line in log_path(name).read_bytes().splitlines() if line]
    return [
        Recorded(seq=row.seq, at=row.at, type=row.type, event=decode_event(row.type, row.data))
        for row in rows
    ]


def write_log(name: str, rows: Iterable[tuple[int, float, str, str]]) -> None:
    """`(seq, at, type, data)` rows, as read from the store's events table."""
    lines = [
        msgspec.json.encode(Row(seq, at, type_, msgspec.Raw(data.encode())))
        for seq, at, type_, data in rows
    ]
    log_path(name).write_bytes(b"".join(line + b"\n" for line in lines))


def replay_decisions(name: str) -> Expected:
    """Fold each event of the log and ask decide what to do next, at that event's own time.
    (A log keeps no session id, so the state is named after the log.)"""
    state = initial_state(name)
    decisions: list[Decision] = []
    for recorded in read_log(name):
        fold(state, recorded)
        action = decide(state, recorded.at)
        decisions.append(Decision(recorded.seq, msgspec.to_builtins(action)))
    return Expected(decisions=decisions, state=msgspec.to_builtins(state))


def read_expected(name: str) -> Expected:
    return msgspec.json.decode(expected_path(name).read_bytes(), type=Expected)


def write_expected(name: str) -> Path:
    expected = replay_decisions(name)
    path = expected_path(name)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(expected), indent=2) + b"\n")
    return path


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Regenerate the expected files of golden logs.")
    parser.add_argument("names", nargs="*", help="golden logs to regenerate (default: all)")
    args = parser.parse_args(argv)
    for name in args.names or names():
        print(f"wrote {write_expected(name)}")


if __name__ == "__main__":
    _main()
