"""Golden logs, recorded from real runs, replay through the real `fold` and `decide` to the
decisions and the state committed beside them (`tests/golden/`).

A failure here means the reducer or decide now reads a recorded history differently: a
brain waking such a session would do something else than the one that wrote it. If that is
the intent, regenerate the expected files deliberately and review their diff in the same
commit (never to make this test pass):

    .venv/bin/python -m tests.golden.golden [name ...]

`tests/golden/golden.py` says what the files hold; `python -m tests.golden.record` records
the logs themselves from real runs.
"""

from __future__ import annotations

import msgspec
import pytest

from tests.golden.golden import Expected, expected_path, names, read_expected, replay_decisions


def test_there_are_golden_logs_each_with_its_expected_file() -> None:
    assert len(names()) >= 4
    missing = [name for name in names() if not expected_path(name).exists()]
    assert not missing, f"no expected file for {missing}: python -m tests.golden.golden NAME"


@pytest.mark.parametrize("name", names())
def test_a_golden_log_replays_to_the_same_decisions_and_state(name: str) -> None:
    expected = read_expected(name)
    # Through JSON, as the expected file was written.
    replayed = msgspec.json.decode(msgspec.json.encode(replay_decisions(name)), type=Expected)
    assert [d.seq for d in replayed.decisions] == [d.seq for d in expected.decisions]
    for was, now in zip(expected.decisions, replayed.decisions, strict=True):
        assert now.action == was.action, f"{name}: after seq {was.seq}, decide changed its mind"
    assert replayed.state == expected.state, f"{name}: the final state differs"
