"""What live brains export, as runs read and commit a log: at most once per span, and all
of `keel trace`'s spans when no brain died."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Recorded
from tests.golden.golden import names, read_log
from tests.traces.logs import MemoryReader
from traces import Span, project
from traces._follower import PAGE, LogFollower


class Brain:
    """A brain process's follower, and what it exported."""

    def __init__(self, log: list[Recorded]) -> None:
        self.exported: list[Span] = []
        self.reader = MemoryReader(log)
        self.follower = LogFollower(self.reader, self.exported.append)

    async def run(
        self, session_id: str, epoch: int, read: Sequence[Recorded], commits: list[list[Recorded]]
    ) -> None:
        """One run: what it read at wake, then its commits."""
        await self.follower.saw(session_id, epoch, read, committed=False)
        for batch in commits:
            await self.follower.saw(session_id, epoch, batch, committed=True)


def _runs(log: list[Recorded], cuts: list[int]) -> list[tuple[list[Recorded], list[Recorded]]]:
    """The log cut into runs; each run reads its first event (input appended meanwhile, by
    the gateway) and commits the rest."""
    bounds = [0, *sorted(set(cuts)), len(log)]
    runs = []
    for start, end in itertools.pairwise(bounds):
        if start < end:
            runs.append((log[start : start + 1], log[start + 1 : end]))
    return runs


async def test_one_brain_exports_every_span_of_the_log_once() -> None:
    for name in names():
        log = read_log(name)
        brain = Brain(log)
        for epoch, (read, committed) in enumerate(_runs(log, [2, 5, 8]), start=1):
            await brain.run(name, epoch, read, [[r] for r in committed])
        assert brain.exported == project(name, log)
        assert brain.follower.following() == 0  # the session ended: nothing kept


async def test_a_brain_taking_over_exports_what_it_commits_and_nothing_twice() -> None:
    log = read_log("approval")  # the grant (seq 8) is the gateway's
    first, second = Brain(log), Brain(log)
    await first.run("approval", 1, log[:2], [[r] for r in log[2:7]])
    # The second brain never held the session: it rebuilds it from the log, exports none
    # of what it read (the first brain did, or died first), and all it commits.
    await second.run("approval", 2, log[7:8], [[r] for r in log[8:]])
    assert second.reader.reads == 1
    everything = project("approval", log)
    exported = first.exported + second.exported
    assert len({s.span_id for s in exported}) == len(exported)
    missed = [s for s in everything if s not in exported]
    assert [s.name for s in missed] == ["await_approval bash"]  # closed by what it read
    assert second.exported[0].name == "execute_tool bash"


async def test_a_brain_that_held_the_last_lease_exports_what_the_gateway_appended() -> None:
    log = read_log("approval")
    brain = Brain(log)
    await brain.run("approval", 1, log[:2], [[r] for r in log[2:7]])
    await brain.run("approval", 2, log[7:8], [[r] for r in log[8:]])
    assert brain.exported == project("approval", log) and brain.reader.reads == 0


async def test_a_run_that_read_nothing_new_keeps_the_brain_the_last_holder() -> None:
    log = read_log("approval")
    brain = Brain(log)
    await brain.run("approval", 1, log[:2], [[r] for r in log[2:7]])
    await brain.run("approval", 2, [], [])  # woken twice for the same reason: nothing to do
    await brain.run("approval", 3, log[7:8], [[r] for r in log[8:]])
    assert brain.exported == project("approval", log) and brain.reader.reads == 0


async def test_a_run_of_nothing_on_a_session_new_to_the_brain_keeps_nothing() -> None:
    log = read_log("approval")
    brain = Brain(log)
    await brain.run("approval", 4, [], [])
    assert brain.follower.following() == 0
    await brain.run("approval", 5, log[7:8], [[r] for r in log[8:]])  # new to it: rebuilt
    assert brain.reader.reads == 1
    assert "await_approval bash" not in [span.name for span in brain.exported]


async def test_a_brain_new_to_a_session_reads_its_log_once_to_rebuild_it() -> None:
    log = read_log("coding")
    assert len(log) < PAGE
    brain = Brain(log)
    await brain.follower.saw("coding", 7, log[-1:], committed=True)
    assert brain.reader.reads == 1
    assert brain.exported == project("coding", log)[-1:]  # the turn its commit closed


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(names()),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=6),
    brains=st.lists(st.integers(min_value=0, max_value=2), min_size=7, max_size=7),
)
async def test_brains_in_turn_never_export_a_span_twice_nor_one_not_in_the_log(
    name: str, cuts: list[int], brains: list[int]
) -> None:
    log = read_log(name)
    pool = [Brain(log) for _ in range(3)]
    for epoch, (read, committed) in enumerate(_runs(log, cuts), start=1):
        brain = pool[brains[(epoch - 1) % len(brains)]]
        await brain.run(name, epoch, read, [committed])
    everything = project(name, log)
    exported = [span for brain in pool for span in brain.exported]
    assert len({s.span_id for s in exported}) == len(exported)
    assert all(span in everything for span in exported)
    if len({brains[(n - 1) % len(brains)] for n in range(1, len(_runs(log, cuts)) + 1)}) == 1:
        assert sorted(exported, key=lambda s: s.span_id) == sorted(
            everything, key=lambda s: s.span_id
        )
