"""The one generic case workflow: interprets the SOP template carried in its input.

Claims, releases and completions are Workflow Updates. Their validators reject what the
case does not allow (nothing lands in history); handlers change state without awaiting,
so two racing claims can never both win. The main loop keeps the SQL read model in step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.read_model import PROJECT_CASE
    from workflows import case_logic
    from workflows.case_logic import CaseRuleError
    from workflows.case_models import (
        CaseInput,
        CaseSnapshot,
        CaseStatus,
        ClaimTask,
        CompleteTask,
        ReleaseTask,
        Task,
    )

# The read model must catch up after any outage, so projection retries without end.
PROJECTION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1),
                               maximum_interval=timedelta(seconds=30))  # fmt: skip

C = TypeVar("C")


def rule_error(exc: CaseRuleError) -> ApplicationError:
    """The Temporal form of a refused command: its type is the kind the API maps to HTTP."""
    return ApplicationError(exc.message, exc.details, type=exc.kind, non_retryable=True)


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    @workflow.init
    def __init__(self, inp: CaseInput) -> None:
        self._input = inp
        self._case = case_logic.open_case(inp, workflow.now())
        self._projected_revision = 0

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseSnapshot:
        while True:
            await workflow.wait_condition(self._read_model_behind)
            await self._project()
            if self._case.status == CaseStatus.CLOSED and not self._read_model_behind():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._case

    def _read_model_behind(self) -> bool:
        return self._case.revision > self._projected_revision

    async def _project(self) -> None:
        revision = self._case.revision
        # A local activity: one marker event per write instead of a scheduled activity task.
        await workflow.execute_local_activity(
            PROJECT_CASE,
            self._case,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PROJECTION_RETRY,
        )
        self._projected_revision = max(self._projected_revision, revision)

    @workflow.query(name="snapshot")
    def snapshot(self) -> CaseSnapshot:
        return self._case

    @workflow.update(name="claim_task")
    def claim_task(self, cmd: ClaimTask) -> CaseSnapshot:
        return self._apply(lambda: case_logic.claim(self._case, cmd, workflow.now()))

    @claim_task.validator
    def _validate_claim(self, cmd: ClaimTask) -> None:
        self._check(lambda: case_logic.check_claim(self._case, cmd))

    @workflow.update(name="release_task")
    def release_task(self, cmd: ReleaseTask) -> CaseSnapshot:
        return self._apply(lambda: case_logic.release(self._case, cmd, workflow.now()))

    @release_task.validator
    def _validate_release(self, cmd: ReleaseTask) -> None:
        self._check(lambda: case_logic.check_release(self._case, cmd))

    @workflow.update(name="complete_task")
    def complete_task(self, cmd: CompleteTask) -> CaseSnapshot:
        return self._apply(
            lambda: case_logic.complete(self._case, self._input.template, cmd, workflow.now())
        )

    @complete_task.validator
    def _validate_complete(self, cmd: CompleteTask) -> None:
        self._check(lambda: case_logic.check_complete(self._case, cmd))

    def _check(self, rule: Callable[[], Task]) -> None:
        try:
            rule()
        except CaseRuleError as exc:
            raise rule_error(exc) from None

    def _apply(self, change: Callable[[], Task]) -> CaseSnapshot:
        # Handlers never await: the check and the change happen in one step of the loop.
        before = self._case.model_copy(deep=True)
        try:
            change()
        except CaseRuleError as exc:
            self._case = before  # a refused change leaves the case exactly as it was
            raise rule_error(exc) from None
        return self._case
