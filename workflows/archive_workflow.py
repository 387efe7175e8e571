"""Archives a case's history once the case has closed (started by the case as it closes)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.archive import ARCHIVE_CASE

# Until the case's last event exists, and through any database outage: retry, never give up.
ARCHIVE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


@workflow.defn(name="ArchiveCaseWorkflow")
class ArchiveCaseWorkflow:
    @workflow.run
    async def run(self, case_id: str) -> str:
        return await workflow.execute_activity(
            ARCHIVE_CASE,
            case_id,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=ARCHIVE_RETRY,
            result_type=str,
        )
