"""The demo: a small but real coding task for the scripted model.

It writes a function and its test into the sandbox's workspace, runs the test with bash (it
fails), fixes the function, runs the test again (it passes), and ends; a command check, run
in the sandbox, must pass before the session counts as completed. With a real model
(`keel run --provider anthropic --model ...`) the same tools and check apply, and the model
decides the steps itself.
"""

from __future__ import annotations

from typing import Any

APP = "def add(a, b):\n    return a - b\n"
TEST = (
    "from app import add\n\n"
    "assert add(2, 3) == 5, f'add(2, 3) is {add(2, 3)}'\n"
    "print('ok: add works')\n"
)
# -B: the fix keeps the file's size and mtime second, so a cached .pyc could hide it.
RUN_TEST = "python3 -B test_app.py"

SYSTEM = (
    "You are a careful engineer working in a sandbox with a /workspace directory. Write "
    "code with the tools, run its tests with bash, fix what fails, and stop when the tests pass."
)


def _script() -> list[dict[str, Any]]:
    def turn(text: str, *calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            "text": text,
            "tool_calls": [{"name": name, "input": arguments} for name, arguments in calls],
            "latency_ms": 400,
            "input_tokens": 800,
            "output_tokens": 60,
        }

    return [
        turn(
            "I'll write add() and a test for it.",
            ("write_file", {"path": "app.py", "content": APP}),
            ("write_file", {"path": "test_app.py", "content": TEST}),
        ),
        turn("Let me run the test.", ("bash", {"command": RUN_TEST})),
        turn(
            "add() subtracts. Fixing it.",
            ("edit_file", {"path": "app.py", "old_string": "a - b", "new_string": "a + b"}),
        ),
        turn("Run the test again.", ("bash", {"command": RUN_TEST})),
        turn("The test passes: add() is fixed."),
    ]


def demo_spec() -> dict[str, Any]:
    """The agent spec, as the API takes it."""
    return {
        "model": {"provider": "scripted", "name": "scripted", "options": {"script": _script()}},
        "system_prompt": SYSTEM,
        "tools": ["bash", "read_file", "write_file", "edit_file", "list_files", "grep"],
        "budgets": {"max_turns": 30},
        "completion": {"kind": "command", "command": RUN_TEST},
    }
