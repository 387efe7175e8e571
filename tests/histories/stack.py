"""What the recording scripts run a case on: Temporal's time-skipping server, the built-in
billing service over HTTP, SMTP on loopback and a worker, all in this process."""

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain.case_models import ClaimTask, CommandResult, CompleteTask
from settings import Settings
from store.db import make_engine, migrate
from tests.billing_harness import BillingService
from tests.conftest import start_time_skipping
from tests.harness import AGENT
from tests.smtp_sink import SmtpSink
from workflows.worker import build_worker

TASK_QUEUE = "rec"


@asynccontextmanager
async def recording_stack(
    mail: SmtpSink | None = None,
) -> AsyncIterator[tuple[WorkflowEnvironment, BillingService]]:
    """The server and the ledger, with a worker on `TASK_QUEUE`. The ledger holds customer
    C1 (EUR) with invoice INV-1, 900.00, ten days past due. SMTP is `mail` as given (a
    script that wants it down at first starts it itself), else a sink started here."""
    tmp = Path(tempfile.mkdtemp())
    ledger = BillingService(f"sqlite:///{tmp / 'billing.db'}")
    ledger.start()
    due = date.today() - timedelta(days=10)
    ledger.put_customer("C1", currency="EUR")
    ledger.put_invoice("INV-1", "C1", "900.00", due, due - timedelta(days=30))
    if mail is None:
        mail = SmtpSink()
        mail.start()
    env = await start_time_skipping()
    engine = make_engine(f"sqlite:///{tmp / 'casebook.db'}")
    migrate(engine)
    settings = Settings(smtp_host="127.0.0.1", smtp_port=mail.port, billing_url=ledger.url)
    try:
        async with build_worker(env.client, TASK_QUEUE, engine, settings):
            yield env, ledger
    finally:
        await env.shutdown()
        mail.stop()
        ledger.stop()


async def work(handle: WorkflowHandle, task_id: str, outcome: str) -> None:
    """The agent claims `task_id` and completes it with `outcome`."""
    await handle.execute_update(
        "claim_task", ClaimTask(task_id=task_id, actor=AGENT), result_type=CommandResult
    )
    await handle.execute_update(
        "complete_task",
        CompleteTask(task_id=task_id, actor=AGENT, outcome=outcome),
        result_type=CommandResult,
    )
