"""Record a dispute whose SLA timer is kept across changes (patch `sla-timer-rearm`):
claimed and released while the triage's warning stands (no timer re-armed), then the
warning and the breach fire (a new timer each time the deadline moves) and escalate.

Run `.venv/bin/python tests/histories/record_sla_timer.py`; it writes
`dispute_sla_timer_kept.json` beside it (time-skipping server, the built-in billing service
over HTTP, an SMTP server on loopback; the case left open).
"""

import asyncio
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domain.case_models import ClaimTask, CommandResult, ReleaseTask
from settings import Settings
from store.db import make_engine, migrate
from tests.billing_harness import BillingService, put_shared_book
from tests.conftest import start_time_skipping
from tests.harness import AGENT, dispute_input
from tests.smtp_sink import SmtpSink
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

OUT = Path(__file__).parent
CASE_ID = "DSP-RECORDED-SLA-TIMER"


async def _open_task_id(handle) -> str:
    for _ in range(300):
        case = await handle.query(CaseWorkflow.snapshot)
        if open_tasks := [t for t in case.tasks if t.status == "open"]:
            return open_tasks[0].id
        await asyncio.sleep(0.1)
    raise RuntimeError("the triage task never opened")


async def _until_escalated(handle) -> None:
    for _ in range(300):
        case = await handle.query(CaseWorkflow.snapshot)
        if case.escalations:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the breach never escalated")


async def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    ledger = BillingService(f"sqlite:///{tmp / 'billing.db'}")
    ledger.start()
    put_shared_book(ledger, date.today())
    mail = SmtpSink()
    mail.start()
    env = await start_time_skipping()
    engine = make_engine(f"sqlite:///{tmp / 'casebook.db'}")
    migrate(engine)
    settings = Settings(smtp_host="127.0.0.1", smtp_port=mail.port, billing_url=ledger.url)
    async with build_worker(env.client, "rec", engine, settings):
        inp = dispute_input("10.00", case_id=CASE_ID)
        h = await env.client.start_workflow(CaseWorkflow.run, inp, id=CASE_ID, task_queue="rec")
        task_id = await _open_task_id(h)
        for update, cmd in [
            ("claim_task", ClaimTask(task_id=task_id, actor=AGENT)),
            ("release_task", ReleaseTask(task_id=task_id, actor=AGENT)),
        ]:
            await h.execute_update(update, cmd, result_type=CommandResult)
        await env.sleep(timedelta(days=30))  # the triage warns, then breaches
        await _until_escalated(h)
        await h.execute_update(
            "claim_task", ClaimTask(task_id=task_id, actor=AGENT), result_type=CommandResult
        )
        await asyncio.sleep(1)
        (OUT / "dispute_sla_timer_kept.json").write_text((await h.fetch_history()).to_json())
        await h.terminate("recorded")
    await env.shutdown()
    mail.stop()
    ledger.stop()


if __name__ == "__main__":
    asyncio.run(main())
