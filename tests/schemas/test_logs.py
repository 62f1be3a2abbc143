"""Logs: JSON lines with the ids as fields, or one readable line; the ids come from the
work in progress, in the task that does it and the tasks it starts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest

from schemas import LogSettings, configure_logging, working_on


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_json_lines_carry_the_process_and_the_work_in_progress(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("brain", "brain-7", LogSettings(format="json"))
    log = logging.getLogger("keel.brain")

    async def child() -> None:
        log.info("inside a task it started")

    with working_on("ses_1", "call_2"):
        log.warning("working")
        await asyncio.create_task(child())
    log.info("idle")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["level"], r["message"]) for r in lines] == [
        ("WARNING", "working"),
        ("INFO", "inside a task it started"),
        ("INFO", "idle"),
    ]
    assert all(r["process"] == "brain" and r["brain_id"] == "brain-7" for r in lines)
    assert all(r["logger"] == "keel.brain" for r in lines)
    assert [(r.get("session_id"), r.get("call_id")) for r in lines] == [
        ("ses_1", "call_2"),
        ("ses_1", "call_2"),
        (None, None),
    ]


def test_text_lines_end_with_the_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("hands", "hands-1", LogSettings(format="text", level="WARNING"))
    with working_on(session_id="ses_1"):
        logging.getLogger("keel.hands").warning("sandbox removed")
        logging.getLogger("keel.hands").info("too quiet to show")
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(" keel.hands sandbox removed [session_id=ses_1]")
