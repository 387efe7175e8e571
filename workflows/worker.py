"""The worker: runs case and escalation workflows and their activities on one task queue."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.archive import ArchiveActivities
from activities.billing import BillingActivities
from activities.email import EmailActivities
from activities.read_model import ReadModelActivities
from activities.reports import ReportActivities
from billing.contract import BillingSystem
from escalations.calendars import load_calendars
from settings import Settings
from workflows.archive_workflow import ArchiveCaseWorkflow
from workflows.case_workflow import CaseWorkflow
from workflows.digest_workflow import ReportDigestWorkflow
from workflows.escalation_workflow import EscalationWorkflow

WORKFLOWS = [CaseWorkflow, EscalationWorkflow, ArchiveCaseWorkflow, ReportDigestWorkflow]
# `holidays` imports lazily at call time (and dateutil reads the clock on import): both are
# deterministic for our use, so they pass through the sandbox instead of re-importing in it.
# The workflows' pure logic is imported under `imports_passed_through`, but a
# `from workflows import case_logic` reaches the submodule past the sandbox's import hook:
# named here, it is imported once, not re-run for every workflow the worker starts or replays.
PURE_LOGIC = (
    "access.policy",
    "workflows.case_core",
    "workflows.case_logic",
    "workflows.case_sla",
    "workflows.escalation_logic",
    "workflows.steps",
)
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "holidays", "dateutil", "escalations", *PURE_LOGIC
    )
)
# Holidays are computed outside the sandbox (the package reads locale data); SLA deadlines
# within these years never compute them inside a workflow.
HOLIDAY_YEARS = range(2020, 2061)


def warm_calendars() -> None:
    """Compute holidays before any workflow runs, in a worker or a Replayer alike."""
    for calendar in load_calendars().values():
        calendar.warm(HOLIDAY_YEARS)


def build_worker(
    client: Client,
    task_queue: str,
    engine: Engine,
    settings: Settings | None = None,
    billing: BillingSystem | None = None,
) -> Worker:
    """A worker for `task_queue`; scale out by running more of them (processes or hosts).

    `billing` replaces the HTTP adapter to `settings.billing_url` (another ERP's adapter)."""
    warm_calendars()
    read_model = ReadModelActivities(engine)
    settings = settings or Settings()
    email = EmailActivities(engine, settings)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=SANDBOX,
        activities=[
            read_model.project_case,
            read_model.project_escalation,
            email.send_email,
            ReportActivities(engine).prepare_digests,
            ArchiveActivities(engine, settings.archive_dir).archive_case,
            BillingActivities(
                settings.billing_url, billing, settings.billing_token.get_secret_value()
            ).billing_call,
        ],
        # Projection does blocking database I/O: it runs on threads, off the event loop.
        activity_executor=ThreadPoolExecutor(max_workers=16),
    )
