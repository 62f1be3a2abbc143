"""A small but real coding session for the scripted model: write code and its test, run the
test (it fails), fix the code, run it again, count the runs, finish.

Every `bash` run appends a line to `.runs` in the workspace, a side-effect counter: the last
call prints how many runs there were, so a drill can prove no non-idempotent call ran twice.
"""

from __future__ import annotations

from typing import Any

from schemas import (
    AgentSpec,
    Budgets,
    CompletionCondition,
    ContextPolicy,
    ContextResets,
    ModelSpec,
    SandboxSpec,
)

APP_BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from app import add\nassert add(2, 3) == 5, add(2, 3)\nprint('test passed')\n"
# -B: the fix keeps the file size and mtime second, so a cached .pyc would hide it.
RUN_TEST = "echo run >> .runs && python3 -B test_app.py"
TOOLS = ["bash", "read_file", "write_file", "edit_file", "list_files", "grep"]


def coding_script(model_latency_ms: float = 0.0, *, slow_turn: int | None = None) -> list[Any]:
    """Turns of the scripted model; `slow_turn` takes 1.5 s (a drill kills the brain then)."""
    turns: list[dict[str, Any]] = [
        {
            "text": "I'll write the function and its test.",
            "tool_calls": [
                {"name": "write_file", "input": {"path": "app.py", "content": APP_BUGGY}},
                {"name": "write_file", "input": {"path": "test_app.py", "content": TEST}},
            ],
        },
        {
            "text": "Now run the test.",
            "tool_calls": [{"name": "bash", "input": {"command": RUN_TEST}}],
        },
        {
            "text": "The test fails: add subtracts. Fix it.",
            "tool_calls": [
                {
                    "name": "edit_file",
                    "input": {"path": "app.py", "old_string": "a - b", "new_string": "a + b"},
                },
                {"name": "grep", "input": {"pattern": "def add"}},
            ],
        },
        {"text": "Run it again.", "tool_calls": [{"name": "bash", "input": {"command": RUN_TEST}}]},
        {
            "text": "How many test runs were there?",
            "tool_calls": [{"name": "bash", "input": {"command": "wc -l < .runs"}}],
        },
        {"text": "The test passes; add is fixed.", "input_tokens": 900, "output_tokens": 40},
    ]
    for index, turn in enumerate(turns):
        turn.setdefault("input_tokens", 100 * (index + 1))
        turn.setdefault("output_tokens", 20)
        turn["latency_ms"] = 1500.0 if index == slow_turn else model_latency_ms
    return turns


def coding_spec(script: list[Any], **fields: Any) -> AgentSpec:
    return AgentSpec(
        model=ModelSpec(provider="scripted", name="scripted", options={"script": script}),
        system_prompt="You are a careful engineer.",
        tools=TOOLS,
        budgets=Budgets(max_turns=50),
        sandbox=SandboxSpec(call_timeout_s=30),
        **fields,
    )


# The brain's compaction points, reached only by a session that compacts.
COMPACTION_POINTS = frozenset({"after_compaction_summary", "after_context_compacted"})


def compacting_spec(script: list[Any], **fields: Any) -> AgentSpec:
    """`coding_spec` with a window so small that the coding session compacts by a model's
    summary before each of its later turns, keeping only the last one."""
    context = ContextPolicy(window_tokens=1024, compact_at=0.25, strategy="summary", keep_turns=1)
    return coding_spec(script, context=context, **fields)


# -- context resets: an initializer, a worker that cheats, a worker that does the work --------

CALC_BUGGY = "def add(a, b):\n    return a - b\n"
CALC_TEST = "from calc import add\n\nassert add(2, 3) == 5, add(2, 3)\nprint('test passed')\n"
PLAN = "1. Write tests/test_calc.py.\n2. Make add() pass it.\n"
# The cheat: make the test expect what the bug gives, by bash (the edit tool is refused).
CHEAT = (
    "sed -i 's/== 5/== -1/' tests/test_calc.py && echo run >> .runs"
    " && echo 'the tests pass' > PROGRESS.md"
)
# The completion check: the test passes, and the cheat's bash ran exactly once.
CALC_CHECK = 'test "$(cat .runs)" = run && PYTHONPATH=. python3 -B tests/test_calc.py'


def reset_script() -> list[Any]:
    """Seven turns over three iterations (the scripted model plays the session's turn n,
    whichever iteration it is in):

    1. turns 0-1, the initializer: writes the plan and the test (and the bug); the completion
       check fails, so the iteration ends and the next starts from the handoff.
    2. turns 2-4, a worker that did not write the test: its `edit` of it is refused; it
       changes it with bash instead and claims success; the check at the end of its turn
       puts the test back and tells it; its three turns are used, so the iteration ends.
    3. turns 5-6, a worker that fixes the code: the check passes.
    """
    turns: list[dict[str, Any]] = [
        {
            "text": "First the plan and a test.",
            "tool_calls": [
                {"name": "write", "input": {"file_path": "PLAN.md", "content": PLAN}},
                {"name": "write", "input": {"file_path": "calc.py", "content": CALC_BUGGY}},
                {
                    "name": "write",
                    "input": {"file_path": "tests/test_calc.py", "content": CALC_TEST},
                },
            ],
        },
        {"text": "The plan and the test are in place."},
        {
            "text": "The test is wrong; make it expect -1.",
            "tool_calls": [
                {
                    "name": "edit",
                    "input": {
                        "file_path": "tests/test_calc.py",
                        "old_string": "== 5",
                        "new_string": "== -1",
                    },
                }
            ],
        },
        {
            "text": "Then by other means.",
            "tool_calls": [{"name": "bash", "input": {"command": CHEAT}}],
        },
        {"text": "The tests pass now."},
        {
            "text": "Fix add() itself.",
            "tool_calls": [
                {
                    "name": "edit",
                    "input": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"},
                },
                {"name": "write", "input": {"file_path": "PROGRESS.md", "content": "add fixed\n"}},
            ],
        },
        {"text": "add() is fixed and its test passes."},
    ]
    for turn in turns:
        turn.update(input_tokens=100, output_tokens=20)
    return turns


def reset_spec(script: list[Any], **fields: Any) -> AgentSpec:
    return AgentSpec(
        model=ModelSpec(provider="scripted", name="scripted", options={"script": script}),
        system_prompt="You are a careful engineer.",
        tools=["bash", "read", "write", "edit"],
        budgets=Budgets(max_turns=50),
        sandbox=SandboxSpec(call_timeout_s=30),
        completion=CompletionCondition(kind="command", command=CALC_CHECK),
        context_resets=ContextResets(max_turns=3),
        **fields,
    )
