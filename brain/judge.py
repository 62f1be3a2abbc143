"""The completion check: someone other than the worker says whether the goal is met.

A command oracle runs in the session's sandbox and passes on exit status 0; a judge model
reads the conversation and the criteria and answers PASS or FAIL. Either way the verdict is
recorded (`judge.verdict`), and a failed one sends the model back to work.

A defined outcome (`outcome.defined`) is checked the same way by its grader
(`brain.grader`): its evaluation is recorded as it starts, every `grader_heartbeat_s` while
it runs, and as it ends (`outcome.evaluation_started`, `_ongoing`, `outcome.evaluated`), and
its feedback sends the worker back until the rubric is met or the outcome's evaluations run
out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import msgspec

from brain._background import spawn
from brain._inbox import Inbox
from brain._leased_log import LeasedLog
from brain._sandbox_slot import SandboxSlot
from brain.context import ChatMessage, build_context
from brain.decide import GradeOutcome
from brain.deps import Hands
from brain.grader import evaluation, grader_request
from brain.hands_client import HandsUnavailable, ProvisionFailed, SandboxGone
from brain.providers import (
    ModelProvider,
    ModelRequest,
    ProviderError,
    RetryPolicy,
    complete_with_retries,
)
from brain.state import SessionState
from schemas import (
    TERMINAL_STATUSES,
    CallRequest,
    Event,
    JudgeVerdict,
    ModelSpec,
    OutcomeEvaluationOngoing,
    OutcomeEvaluationStarted,
    SessionStatus,
    TextBlock,
    ToolOutcome,
    new_id,
)
from session_store import Conflict

DETAIL_CHARS: Final = 2000

JUDGE_PROMPT: Final = (
    "You check whether an AI agent has met its goal. Judge only by the conversation above "
    "and these criteria:\n{criteria}\n\nAnswer PASS or FAIL on the first line, then say why "
    "in one or two sentences."
)


def verdict_from_outcome(command: str, outcome: ToolOutcome) -> JudgeVerdict:
    passed = outcome.outcome == "ok" and outcome.exit_code in (0, None) and not outcome.is_error
    status = "passed" if passed else f"failed (exit {outcome.exit_code}, {outcome.outcome})"
    detail = f"`{command}` {status}: {outcome.output[-DETAIL_CHARS:]}".strip()
    return JudgeVerdict(passed=passed, judge="command", detail=detail)


async def judge_by_model(
    providers: Callable[[ModelSpec], ModelProvider], state: SessionState, retry: RetryPolicy
) -> JudgeVerdict:
    assert state.spec is not None
    condition = state.spec.completion
    model = condition.judge_model or state.spec.model
    context = build_context(state)
    question = JUDGE_PROMPT.format(criteria=condition.criteria or "the user's request is done")
    ask = ChatMessage(role="user", content=[TextBlock(text=question)])
    request = ModelRequest(
        session_id=state.session_id,
        model=model,
        context=msgspec.structs.replace(context, messages=[*context.messages, ask]),
        turn=state.turns,
    )
    response = await complete_with_retries(providers(model), request, None, retry)
    answer = "".join(b.text for b in response.content if isinstance(b, TextBlock)).strip()
    passed = answer.upper().startswith("PASS")
    return JudgeVerdict(passed=passed, judge="model", detail=answer[:DETAIL_CHARS])


class CompletionCheck:
    def __init__(
        self,
        log: LeasedLog,
        sandbox: SandboxSlot,
        inbox: Inbox,
        hands: Hands,
        providers: Callable[[ModelSpec], ModelProvider],
        retry: RetryPolicy,
        heartbeat_s: float,
    ) -> None:
        self.log: Final = log
        self.sandbox: Final = sandbox
        self.inbox: Final = inbox
        self.hands: Final = hands
        self.providers: Final = providers
        self.retry: Final = retry
        self.heartbeat_s: Final = heartbeat_s

    async def judge(self) -> None:
        """Ask the session's completion condition and record its verdict."""
        condition = self.log.spec.completion
        if condition.kind == "command":
            verdict = await self._by_command(condition.command or "true")
        else:
            try:
                verdict = await judge_by_model(self.providers, self.log.state, self.retry)
            except ProviderError as exc:
                await self.log.commit(
                    [SessionStatus(status="failed", reason=f"the judge model failed: {exc}")]
                )
                return
        await self.log.commit([verdict])

    async def grade(self, action: GradeOutcome) -> None:
        """Evaluate the open outcome's work and record how it went. Input that lands
        meanwhile does not void the evaluation (it is recorded after it); an interrupt or
        the session's end does."""
        outcome = self.log.state.outcome
        assert outcome is not None and outcome.outcome_id == action.outcome_id
        started = OutcomeEvaluationStarted(
            outcome_id=outcome.outcome_id, iteration=outcome.iteration
        )
        if not action.resume and not await self._record(started):
            return
        # Asked about the work as it is now, whatever lands while the grader thinks.
        request = grader_request(self.log.state, outcome)
        grading = asyncio.ensure_future(
            complete_with_retries(self.providers(request.model), request, None, self.retry)
        )
        ongoing = OutcomeEvaluationOngoing(
            outcome_id=outcome.outcome_id, iteration=outcome.iteration
        )
        try:
            while not (await asyncio.wait({grading}, timeout=self.heartbeat_s))[0]:
                if not await self._record(ongoing):
                    return
        finally:
            grading.cancel()
        try:
            answer = grading.result()
        except ProviderError as exc:
            await self._record(evaluation(outcome, None, f"the grader could not answer: {exc}"))
            return
        await self._record(evaluation(outcome, answer))

    async def _record(self, event: Event) -> bool:
        """Commit an event of the outcome being graded, after whatever input came meanwhile;
        False, with nothing written, once the outcome is no longer to be graded."""
        outcome_id = self.log.state.outcome.outcome_id if self.log.state.outcome else None
        while True:
            state = self.log.state
            if (
                state.interrupted
                or state.status in TERMINAL_STATUSES
                or state.outcome is None
                or state.outcome.outcome_id != outcome_id
            ):
                return False
            try:
                await self.log.commit([event])
                return True
            except Conflict:
                await self.log.catch_up()

    async def _by_command(self, command: str) -> JudgeVerdict:
        """Run `command` in the session's sandbox, as a call of the run's own (not the
        model's: it is in no event), and judge by how it ended."""
        try:
            sandbox_id = await self.sandbox.get()
        except (HandsUnavailable, ProvisionFailed) as exc:
            return JudgeVerdict(passed=False, judge="command", detail=f"no sandbox: {exc}")
        call_id = new_id("judge")
        waiter = self.inbox.expect(call_id)
        request = CallRequest(
            call_id=call_id,
            session_id=self.log.session_id,
            name="bash",
            input={"command": command},
        )
        try:
            await self.hands.send(sandbox_id, request)
            outcome = await asyncio.wait_for(waiter, self.log.spec.sandbox.call_timeout_s + 30)
        except (SandboxGone, TimeoutError) as exc:
            if isinstance(exc, SandboxGone):
                self.sandbox.gone(sandbox_id)
            return JudgeVerdict(
                passed=False, judge="command", detail=f"the check could not run: {exc!r}"
            )
        finally:
            self.inbox.stop_expecting(call_id)
        spawn(self.hands.ack(sandbox_id, call_id))
        return verdict_from_outcome(command, outcome)
