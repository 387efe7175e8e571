"""The review digest: run by a Temporal Schedule (`casebook report schedule`), it emails
each vendor's leads the review of the period that just ended."""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.email import SEND_EMAIL, EmailRequest, EmailResult
    from activities.reports import PREPARE_DIGESTS, DigestRequest

DIGEST_WORKFLOW = "ReportDigestWorkflow"


class DigestInput(BaseModel):
    kind: str = "day"  # day, week or month: the period before the one the run falls in
    at: date | None = None  # a day of another period (sending a past review by hand)


@workflow.defn(name=DIGEST_WORKFLOW)
class ReportDigestWorkflow:
    @workflow.run
    async def run(self, inp: DigestInput) -> list[str]:
        # The day before the run is in the period that just ended (yesterday, last week's
        # Sunday, last month's last day).
        at = inp.at or (workflow.now() - timedelta(days=1)).date()
        emails = await workflow.execute_activity(
            PREPARE_DIGESTS,
            DigestRequest(kind=inp.kind, at=at),
            result_type=list[EmailRequest],
            start_to_close_timeout=timedelta(minutes=5),
        )
        sent = []
        for email in emails:
            result = await workflow.execute_activity(
                SEND_EMAIL,
                email,
                result_type=EmailResult,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
            )
            sent.append(f"{result.idempotency_key}: {result.status}")
        return sent
