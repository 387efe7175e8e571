"""Record a dispute through the money controls (`workflow.patched("money-controls")`): an
agent's retry with a large credit goes back to a lead, who approves it; billing applies it.

Run `.venv/bin/python tests/histories/record_money.py` (it writes only
`dispute_money_approval.json`; `record.py` keeps the older histories as they were).
"""

import asyncio
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain.case_models import ClaimTask, CommandResult, CompleteTask
from settings import Settings
from store.db import make_engine, migrate
from tests.billing_harness import BillingService
from tests.harness import AGENT, LEAD, case_input
from tests.smtp_sink import SmtpSink
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

OUT = Path(__file__).parent
CASE_ID = "DSP-RECORDED-MONEY"


async def work(handle, task_id, actor, outcome, data=None):
    await until(handle, lambda c: c.task(task_id) is not None)
    actor = actor.model_copy(update={"queues": ["disputes-tier1", "disputes-tier2"]})
    await handle.execute_update(
        "claim_task", ClaimTask(task_id=task_id, actor=actor), result_type=CommandResult
    )
    await handle.execute_update(
        "complete_task",
        CompleteTask(task_id=task_id, actor=actor, outcome=outcome, data=data or {}),
        result_type=CommandResult,
    )


async def until(handle, accept):
    case = None
    for _ in range(200):
        case = await handle.query(CaseWorkflow.snapshot)
        if accept(case):
            return case
        await asyncio.sleep(0.05)
    raise AssertionError(f"the case never got there: {case.current_step}")


async def main():
    tmp = Path(tempfile.mkdtemp())
    billing = BillingService(f"sqlite:///{tmp / 'billing.db'}")
    billing.start()
    today = date.today()
    billing.put_customer("C-REC")
    billing.put_invoice("INV-REC-SMALL", "C-REC", "100.00", today, today - timedelta(days=30))
    billing.put_invoice("INV-REC-BIG", "C-REC", "300000.00", today, today - timedelta(days=30))
    mail = SmtpSink()
    mail.start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=".venv/bin/temporal", data_converter=pydantic_data_converter
    )
    engine = make_engine(f"sqlite:///{tmp / 'rec.db'}")
    migrate(engine)
    settings = Settings(billing_url=billing.url, smtp_host="127.0.0.1", smtp_port=mail.port)
    try:
        await record(env, engine, settings)
    finally:
        await env.shutdown()
        mail.stop()
        billing.stop()


async def record(env, engine, settings):
    async with build_worker(env.client, "rec", engine, settings):
        inp = case_input(
            "dispute",
            "500.00",
            customer_id="C-REC",
            invoice_ids=["INV-REC-SMALL", "INV-REC-BIG"],
            region="US",
            case_id=CASE_ID,
        )
        h = await env.client.start_workflow(CaseWorkflow.run, inp, id=CASE_ID, task_queue="rec")
        await work(h, f"{CASE_ID}.t1", AGENT, "accept")
        await work(h, f"{CASE_ID}.t2", AGENT, "valid", {"invoice_id": "INV-REC-SMALL"})
        await until(h, lambda c: len(c.tasks) == 3)  # billing refused: the error task
        retry = {"credit_amount": "250000", "invoice_id": "INV-REC-BIG"}
        await work(h, f"{CASE_ID}.t3", AGENT, "retry", retry)
        await until(h, lambda c: c.current_step == "lead_approval")
        await work(h, f"{CASE_ID}.t4", LEAD, "approve")
        await h.result()
        (OUT / "dispute_money_approval.json").write_text((await h.fetch_history()).to_json())


asyncio.run(main())
