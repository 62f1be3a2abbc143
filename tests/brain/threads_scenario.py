"""A coordinator, three workers and a judge, on scripted models: the three-role harness in
miniature, each role on its own model with its own system prompt and context.

The coordinator spawns three workers at once (each writes its part in its own sandbox and
counts its runs), then a judge to grade their replies, then sends the first worker one more
message and ends its turn with the judge's verdict. Thread ids are derived from the session
and the call, so a session whose id is chosen first has a script that names its threads.
"""

from __future__ import annotations

from typing import Any

from brain.threads import MESSAGE_TOOL, SPAWN_TOOL, thread_id_for
from schemas import (
    AgentSpec,
    Budgets,
    CustomTool,
    ModelSpec,
    NamedAgent,
    SandboxSpec,
    Subagents,
)

WORKER_PROMPT = "You are a worker: do the one task you are given, in your own workspace."
JUDGE_PROMPT = "You are a judge: grade the workers' replies against the task list."
COORDINATOR_PROMPT = "You are a coordinator: split the work, hand it out, have it judged."
PARTS = ("alpha", "beta", "gamma")


def worker_script() -> list[Any]:
    return [
        {
            "text": "Writing my part.",
            "tool_calls": [
                {"name": "bash", "input": {"command": "echo run >> .runs && echo part > part.txt"}}
            ],
        },
        {"text": "", "tool_calls": [{"name": "bash", "input": {"command": "wc -l < .runs"}}]},
        {"text": "part written, ran once"},
        {"text": "the extra check passes too"},
    ]


def judge_script() -> list[Any]:
    return [{"text": "PASS: all three parts are written."}]


def coordinator_script(session_id: str, *, workers: int = 3, message: bool = True) -> list[Any]:
    spawns = [
        {
            "name": SPAWN_TOOL,
            "input": {"agent": "worker", "task": f"Write part {PARTS[i % len(PARTS)]} ({i})."},
        }
        for i in range(workers)
    ]
    turns: list[dict[str, Any]] = [
        {"text": "Handing out the parts.", "tool_calls": spawns},
        {
            "text": "Having it judged.",
            "tool_calls": [
                {"name": SPAWN_TOOL, "input": {"agent": "judge", "task": "Grade the parts."}}
            ],
        },
    ]
    if message:
        first_worker = thread_id_for(session_id, f"{session_id}:t0:0")
        turns.append(
            {
                "text": "One more check for the first worker.",
                "tool_calls": [
                    {
                        "name": MESSAGE_TOOL,
                        "input": {"thread_id": first_worker, "message": "Check it again."},
                    }
                ],
            }
        )
    turns.append({"text": "Done: the judge passed the work."})
    return turns


def _scripted(name: str, script: list[Any], latency_ms: float) -> ModelSpec:
    for turn in script:
        turn.setdefault("latency_ms", latency_ms)
        turn.setdefault("input_tokens", 100)
        turn.setdefault("output_tokens", 10)
    return ModelSpec(provider="scripted", name=name, options={"script": script})


def coordinator_spec(
    session_id: str,
    *,
    workers: int = 3,
    message: bool = True,
    latency_ms: float = 0.0,
    judge: bool = True,
    worker_tools: bool = True,
) -> AgentSpec:
    """`worker_tools=False`: each worker answers at once, with no tool and no sandbox."""
    script = coordinator_script(session_id, workers=workers, message=message)
    if not judge:
        del script[1]
    tools = ["bash", "write_file", "read_file"] if worker_tools else []
    worker = worker_script() if worker_tools else [{"text": "part written"}]
    roster = [
        NamedAgent(
            name="worker",
            description="does one part of the work",
            spec=AgentSpec(
                model=_scripted("worker-model", worker, latency_ms),
                system_prompt=WORKER_PROMPT,
                tools=tools,
                sandbox=SandboxSpec(call_timeout_s=30),
                budgets=Budgets(max_turns=20),
            ),
        ),
        NamedAgent(
            name="judge",
            description="grades the work",
            spec=AgentSpec(
                model=_scripted("judge-model", judge_script(), latency_ms),
                system_prompt=JUDGE_PROMPT,
            ),
        ),
    ]
    return AgentSpec(
        model=_scripted("coordinator-model", script, latency_ms),
        system_prompt=COORDINATOR_PROMPT,
        budgets=Budgets(max_turns=200),
        subagents=Subagents(roster=roster, max_threads=max(workers + 1, 1)),
    )


def asking_spec(session_id: str) -> AgentSpec:
    """A coordinator with one worker that, in one response, asks to run `bash` (which its
    policy makes the user allow) and calls a custom tool (which the user runs): the thread
    waits on the user twice, first for both calls, then for the custom one alone."""
    worker = [
        {
            "text": "Checking.",
            "tool_calls": [
                {"name": "bash", "input": {"command": "echo run >> .runs"}},
                {"name": "lookup", "input": {"word": "keel"}},
            ],
        },
        {"text": "checked"},
    ]
    roster = [
        NamedAgent(
            name="asker",
            spec=AgentSpec(
                model=_scripted("asker-model", worker, 0.0),
                tools=["bash"],
                custom_tools=[CustomTool(name="lookup", description="Look a word up.")],
                permissions={"bash": "ask"},
                sandbox=SandboxSpec(call_timeout_s=30),
                budgets=Budgets(max_turns=20),
            ),
        )
    ]
    coordinator = [
        {
            "text": "",
            "tool_calls": [{"name": SPAWN_TOOL, "input": {"agent": "asker", "task": "Go."}}],
        },
        {"text": "Done."},
    ]
    return AgentSpec(
        model=_scripted("coordinator-model", coordinator, 0.0),
        budgets=Budgets(max_turns=20),
        subagents=Subagents(roster=roster, max_threads=1),
    )
