"""The baseline: what a case's first task does on raw Temporal, with nothing else.

Start; an Update "claim" whose validator refuses a second claim; an Update "complete";
one activity; finish. And for SLAs: one timer at a deadline, whose firing runs one
activity. Kept free of heavy imports: the workflow sandbox re-imports this module for
every workflow it runs.
"""

from __future__ import annotations

import time
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError

BASELINE_WORKFLOW = "BenchBaselineWorkflow"


@activity.defn(name="bench_record_outcome")
async def record_outcome(outcome: str) -> str:
    """Stands for a case's one side effect (its projection)."""
    return outcome


@workflow.defn(name=BASELINE_WORKFLOW)
class BaselineWorkflow:
    def __init__(self) -> None:
        self._assignee: str | None = None
        self._outcome: str | None = None

    @workflow.run
    async def run(self, task_id: str) -> str:
        await workflow.wait_condition(lambda: self._outcome is not None)
        assert self._outcome is not None
        return await workflow.execute_activity(
            record_outcome, self._outcome, start_to_close_timeout=timedelta(seconds=30)
        )

    @workflow.update
    def claim(self, agent: str) -> str:
        self._assignee = agent
        return agent

    @claim.validator
    def _validate_claim(self, agent: str) -> None:
        if self._assignee is not None:
            raise ApplicationError(f"already claimed by {self._assignee}", type="conflict")

    @workflow.update
    def complete(self, outcome: str) -> str:
        self._outcome = outcome
        return outcome

    @complete.validator
    def _validate_complete(self, outcome: str) -> None:
        if self._assignee is None or self._outcome is not None:
            raise ApplicationError("the task is not claimed", type="conflict")


BASELINE_SLA_WORKFLOW = "BenchBaselineSlaWorkflow"
# When each SLA workflow's activity started (epoch seconds), by workflow id: the activity
# runs in the bench's own process, so it can note the moment itself.
FIRED_AT: dict[str, float] = {}


@activity.defn(name="bench_record_breach")
async def record_breach() -> None:
    """Stands for what a breach sets off (Casebook's escalation): notes when it ran."""
    FIRED_AT[activity.info().workflow_id] = time.time()


@workflow.defn(name=BASELINE_SLA_WORKFLOW)
class BaselineSlaWorkflow:
    """An SLA on raw Temporal: one timer at the deadline, whose firing runs one activity."""

    @workflow.run
    async def run(self, due: float) -> None:
        await workflow.sleep(max(0.0, due - workflow.now().timestamp()))
        await workflow.execute_activity(record_breach, start_to_close_timeout=timedelta(seconds=30))
