"""The conversation, tools and settings the provider tests send."""

from __future__ import annotations

import socket

from brain.context import ChatMessage, Context
from brain.providers import RetryPolicy, ToolDefinition
from schemas import TextBlock, ToolResultBlock, ToolUseBlock

KEY_ENV = "KEEL_TEST_MODEL_KEY"
KEY = "sk-test-0123456789"

PRIOR_ID = "call_019a2b3c4d5e6f00112233445566"  # a call recorded earlier in the session
BASH = ToolDefinition(
    name="bash",
    description="Run a shell command.",
    input_schema={
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
)
CONTEXT = Context(
    system="You are a careful engineer.",
    messages=[
        ChatMessage(role="user", content=[TextBlock(text="List the files.")]),
        ChatMessage(
            role="assistant",
            content=[
                TextBlock(text="Looking."),
                ToolUseBlock(call_id=PRIOR_ID, name="bash", input={"command": "ls"}),
            ],
        ),
        ChatMessage(
            role="user",
            content=[
                ToolResultBlock(call_id=PRIOR_ID, output="permission denied", is_error=True),
                TextBlock(text="Try with sudo."),
            ],
        ),
    ],
)
# Retries without waiting: tests stay fast.
FAST = RetryPolicy(attempts=3, base_delay_s=0.001, max_delay_s=0.01, timeout_s=5.0)


def unused_port() -> int:
    """A port on 127.0.0.1 that nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
