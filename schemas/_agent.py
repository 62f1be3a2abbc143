"""The agent spec: everything a session is created with, fixed for its whole life."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

Permission = Literal["allow", "ask", "deny"]
# An environment variable's name, as a shell would take it.
EnvName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Which model drives the session and how it is called."""

    provider: str = "scripted"
    name: str = "scripted"
    max_output_tokens: int = 4096
    temperature: float | None = None
    base_url: str | None = None
    # The variable the brain reads the key from, which must then be set (a local server gets no
    # placeholder); the key itself is never in the spec. None: the provider's default variable.
    api_key_env: EnvName | None = None
    # Provider-specific knobs (e.g. the scripted model's script) travel here untouched.
    options: dict[str, object] = {}


class Budgets(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Limits that pause the session when reached; `None` means unlimited."""

    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_turns: int | None = None
    max_wall_seconds: float | None = None


class CompletionCondition(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who, other than the worker model, decides that the goal is reached.

    `none` trusts the model's own stop; `command` runs `command` in the sandbox and passes on
    exit status 0; `judge` asks `judge_model` with `criteria`. Whatever the kind, a
    `judge_model` also grades the outcomes the user defines (else the worker's model does).
    """

    kind: Literal["none", "command", "judge"] = "none"
    command: str | None = None
    judge_model: ModelSpec | None = None
    criteria: str | None = None


class SandboxSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The limits of the disposable sandbox the session's tools run in."""

    # `self_hosted`: no sandbox of keel's; the user's own worker runs the tools and posts
    # their results (the Managed Agents `environments.work` protocol).
    backend: Literal["local", "docker", "self_hosted"] | None = None
    image: str | None = None
    network: bool = False
    cpus: float = 1.0
    memory_mb: int = 1024
    pids: int = 256
    call_timeout_s: float = 120.0
    max_output_bytes: int = 1_000_000


class ContextPolicy(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How the brain keeps the context it sends under the model's window.

    Before a model call whose context would pass `compact_at` of the window, the brain
    compacts: `handoff` replaces the conversation before the last `keep_turns` turns with a
    structured handoff built from the log (no model call); `summary` asks `summary_model`
    (else the session's model) to summarize it, a request budgeted like any other. Tool
    outputs older than the last `keep_turns` turns are shown as previews with a reference
    to the full output, whether or not the context is compacted.
    """

    # The model's window in tokens; None: keel's table of known windows for the model.
    window_tokens: Annotated[int, msgspec.Meta(ge=1024)] | None = None
    compact_at: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.8
    strategy: Literal["handoff", "summary"] = "handoff"
    keep_turns: Annotated[int, msgspec.Meta(ge=1)] = 8
    summary_model: ModelSpec | None = None


class CustomTool(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A tool the client runs itself: the brain records the call and waits for the client
    to post its one result; it is never sent to the hands."""

    name: str
    description: str = ""
    input_schema: dict[str, object] = {}


# A workspace path as the handoff names it: relative, its segments neither empty nor `..`
# (a pattern without lookarounds, so the served document states it and fuzzers can meet it).
_SEGMENT: Final = r"([^/.][^/]*|\.|\.[^/.][^/]*|\.\.[^/]+)"
HandoffPath = Annotated[
    str,
    msgspec.Meta(
        pattern=rf"^{_SEGMENT}(/{_SEGMENT})*$",
        description="a path relative to the workspace, without `..`",
    ),
]
# Test files the worker may not change unless it wrote them: matched against each file's
# path relative to the workspace, and, for a pattern without `/`, against its name.
DEFAULT_PROTECTED_TESTS: Final = ("tests/**", "*/tests/**", "test_*.py", "*_test.*", "conftest.py")
# Each is read whole into the log at every iteration start: a few, small files.
MAX_HANDOFF_FILES: Final = 8


class ContextResets(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Work in iterations, each from a fresh context (the shift change): the goal, the
    outcome's rubric and the handoff files the workspace holds when it starts.

    An iteration ends when the worker ends its turn and the grader (or the completion check)
    sends it back, or after `max_turns` model responses, or once its model requests used
    `max_tokens`. The test ratchet: a worker may not change a file matching `protected_tests`
    that existed when its iteration started (a `write`/`edit` of one is refused; a change made
    any other way is undone at the end of its turn), unless `allow_test_edits`.

    The handoff files are read, and test files guarded, in keel's sandbox: an agent without
    one (no tools, or a self-hosted environment's) starts each iteration from the goal and
    the rubric alone.
    """

    handoff_files: Annotated[list[HandoffPath], msgspec.Meta(max_length=MAX_HANDOFF_FILES)] = (
        msgspec.field(default_factory=lambda: ["PLAN.md", "PROGRESS.md", "TASKS.md"])
    )
    max_turns: Annotated[int, msgspec.Meta(ge=1)] | None = 30
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    protected_tests: list[Annotated[str, msgspec.Meta(min_length=1)]] = msgspec.field(
        default_factory=lambda: list(DEFAULT_PROTECTED_TESTS)
    )
    allow_test_edits: bool = False

    @property
    def ratchet(self) -> bool:
        """Whether the harness guards test files at all."""
        return not self.allow_test_edits and bool(self.protected_tests)


class AgentSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a session runs: model, instructions, tools and the guards around them."""

    model: ModelSpec = ModelSpec()
    system_prompt: str = ""
    tools: list[str] = []
    # Per-tool permission; a tool not named here falls back to `default_permission`.
    permissions: dict[str, Permission] = {}
    default_permission: Permission = "allow"
    approval_timeout_s: float = 3600.0
    budgets: Budgets = Budgets()
    completion: CompletionCondition = CompletionCondition()
    sandbox: SandboxSpec = SandboxSpec()
    custom_tools: list[CustomTool] = []
    context: ContextPolicy = ContextPolicy()
    # What ending a turn does: `complete` ends the session (keel's own API); `idle` leaves
    # it idle and taking more input, as a Managed Agents session is.
    turn_end: Literal["complete", "idle"] = "complete"
    # None: one context for the whole session; else iterations from fresh contexts.
    context_resets: ContextResets | None = None
    # Sub-agents it may spawn as threads of the session (`brain.threads`); None: none.
    subagents: Subagents | None = None

    def has_sandbox(self) -> bool:
        """Whether keel's sandbox runs any of its tools (it has tools, not all the client's)."""
        return any(not self.runs_on_client(tool) for tool in self.tools)

    def runs_on_client(self, tool: str) -> bool:
        """Whether a call of `tool` is the client's to run (a custom tool, or any tool of a
        self-hosted environment): the brain waits for its result instead of dispatching."""
        return self.sandbox.backend == "self_hosted" or any(
            custom.name == tool for custom in self.custom_tools
        )


class NamedAgent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A roster entry: an agent a session may run as a thread, by its name."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    description: str = ""
    spec: AgentSpec
    # Where the Managed Agents API took it from (an agent's id and version), for its view.
    agent_id: str | None = None
    agent_version: int | None = None


class Subagents(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The threads a session's agent may spawn: agents of its `roster`, by name, and, when
    `inline` allows, agents it defines itself when spawning (a system prompt and a subset
    of its own tools, on its own model). A thread never spawns threads of its own."""

    roster: list[NamedAgent] = []
    inline: bool = False
    # How many threads the agent may spawn in all; more spawn calls are refused, each with a
    # clear error as its result.
    max_threads: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    # `own`: each thread starts from an empty workspace of its own. `coordinator`: each
    # thread starts from the spawning agent's workspace (a git repository) as it was at the
    # spawn, and whatever it leaves there is committed on a branch of its own
    # (`keel/<agent>-<thread>`) and merged back into the spawning agent's workspace when it
    # replies. The spawning agent needs a tool run in keel's sandbox (its workspace).
    workspace: Literal["own", "coordinator"] = "own"
