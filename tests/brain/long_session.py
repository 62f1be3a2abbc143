"""A long session's log, made by the brain's own policy: `decide` says what happens next, the
fold keeps the state, the handoff builder makes each compaction, as a brain would record
them; only the model and the tools are stood in for.

Each model call is a response asking for one `bash` call (reporting as its input tokens the
context the state says it was sent, as a real model does); each call's output is 1-30 KB of
text, log-uniformly spread (most outputs are short, a few are long), inline in the
`tool.result` as the hands keep any output up to their 30,000-byte limit. The state's times
are the generator's, not the store's: for measuring, not for comparing with a replay.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from brain.compaction import handoff_compaction
from brain.decide import CallModel, Compact, Dispatch, Wait, decide
from brain.fold import fold, initial_state
from brain.state import SessionState
from schemas import (
    WAITING_FOR_TOOLS,
    AgentSpec,
    Event,
    ModelResponse,
    ModelSpec,
    Recorded,
    SessionCreated,
    SessionStatus,
    TextBlock,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    ToolUseBlock,
    Usage,
    UserMessage,
    event_type,
)

MIN_OUTPUT: Final = 1_000
MAX_OUTPUT: Final = 30_000
TASK: Final = "Make the test suite pass, then tidy the code; report what you changed."


def long_spec() -> AgentSpec:
    """A coding agent on a model keel knows the window of, with the default policy."""
    return AgentSpec(
        model=ModelSpec(provider="anthropic", name="claude-sonnet-4-5"),
        system_prompt="You are a careful engineer working in a repository.",
        tools=["bash", "read_file", "write_file", "edit_file"],
    )


def _corpus() -> str:
    """Text like what tools print: test runs, tracebacks, listings and code."""
    rng = random.Random(13)
    lines = []
    for index in range(4000):
        kind = index % 4
        if kind == 0:
            dots = "".join(rng.choice(".....F.s") for _ in range(40))
            lines.append(f"tests/test_module_{rng.randrange(90):02d}.py {dots} [{index % 100:3d}%]")
        elif kind == 1:
            lines.append(
                f'  File "src/pkg/mod_{rng.randrange(40)}.py", line {rng.randrange(900)}, '
                f"in handler_{rng.randrange(300)}"
            )
        elif kind == 2:
            lines.append(
                f"-rw-r--r-- 1 agent agent {rng.randrange(99999):6d} Dec  3 07:{index % 60:02d} "
                f"src/pkg/file_{rng.randrange(500)}.py"
            )
        else:
            lines.append(
                f"    value_{rng.randrange(99)} = compute(items[{rng.randrange(50)}], "
                f"limit={rng.randrange(1000)})  # step {index}"
            )
    return "\n".join(lines) + "\n"


CORPUS: Final = _corpus()


def tool_output(rng: random.Random) -> str:
    size = int(math.exp(rng.uniform(math.log(MIN_OUTPUT), math.log(MAX_OUTPUT))))
    start = rng.randrange(len(CORPUS) - size)
    return CORPUS[start : start + size]


@dataclass
class CompactionCost:
    """What the compactions of a generated session cost, in the brain's pure code."""

    count: int = 0
    seconds: list[float] = field(default_factory=list)
    summary_chars: list[int] = field(default_factory=list)
    tokens_before: list[int] = field(default_factory=list)
    tokens_after: list[int] = field(default_factory=list)


class LongSession:
    """An endless log, event by event, each folded into `state` as it is made."""

    def __init__(self, session_id: str, spec: AgentSpec, seed: int = 0) -> None:
        self.state: SessionState = initial_state(session_id)
        self.spec = spec
        self.rng = random.Random(seed)
        self.now = 1_800_000_000.0
        self.compactions = CompactionCost()
        self.requests: list[int] = []  # the context's tokens at each model call

    def created(self) -> SessionCreated:
        return SessionCreated(spec=self.spec, title="a long session")

    def events(self) -> Iterator[Event]:
        """The log from `session.created` on (the store writes that one itself: skip it)."""
        yield self._fold(self.created())
        yield self._fold(UserMessage(text=TASK))
        yield self._fold(SessionStatus(status="running"))
        for turn in itertools.count():
            yield from self._step(turn)

    def _step(self, turn: int) -> Iterator[Event]:
        action = decide(self.state, self.now)
        match action:
            case CallModel():
                self.requests.append(self.state.context_tokens)
                yield from self._model_call(turn)
            case Compact(up_to_seq=up_to_seq):
                started = time.perf_counter()
                event = handoff_compaction(self.state, up_to_seq)
                self._fold(event)
                cost = self.compactions
                cost.seconds.append(time.perf_counter() - started)
                cost.count += 1
                cost.summary_chars.append(len(event.summary))
                cost.tokens_before.append(event.tokens_before)
                cost.tokens_after.append(event.tokens_after)
                yield event
            case Dispatch(call_ids=call_ids):
                for call_id in call_ids:
                    yield self._fold(ToolDispatched(call_id=call_id, sandbox_id="sbx_long"))
            case Wait(reason=reason) if reason == WAITING_FOR_TOOLS:
                for call_id in list(self.state.open_calls):
                    output = tool_output(self.rng)
                    yield self._fold(ToolResult(call_id=call_id, output=output, duration_ms=900))
            case _:
                raise AssertionError(f"a long session does not {action!r}")

    def _model_call(self, turn: int) -> Iterator[Event]:
        call_id = f"call_{turn:07d}"
        command = {"command": f"pytest -q tests/ -k case_{turn % 97}"}
        response = ModelResponse(
            content=[
                TextBlock(text=f"Turn {turn}: run the failing tests again and read the output."),
                ToolUseBlock(call_id=call_id, name="bash", input=command),
            ],
            stop_reason="tool_use",
            usage=Usage(input_tokens=self.state.context_tokens, output_tokens=60),
            model=self.spec.model.name,
            duration_ms=850.0,
            context_seq=self.state.seq,
        )
        yield self._fold(response)
        yield self._fold(ToolRequested(call_id=call_id, name="bash", input=command))

    def _fold(self, event: Event) -> Event:
        self.now += 1.0
        recorded = Recorded(
            seq=self.state.seq + 1, at=self.now, type=event_type(event), event=event
        )
        fold(self.state, recorded)
        return event
