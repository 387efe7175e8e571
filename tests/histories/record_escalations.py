"""Record an escalation's own history: raised by hand, acknowledged by a lead, raised to the
manager when the lead's SLA runs out, resolved. The replay test then guards the
escalation workflow as it guards cases.

Run `.venv/bin/python tests/histories/record_escalations.py NAME`; it writes `NAME.json`
beside it (time-skipping server, the built-in billing service over HTTP, SMTP on
loopback). `escalation_local_projection.json` was recorded with the code from before the
`escalation-project-after-commit` patch (the board written by a local activity),
`escalation_after_commit.json` with the code since.
"""

import asyncio
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domain.case_models import ClaimTask, CommandResult, EscalateCase
from domain.escalation_models import EscalationSnapshot, LeadAction
from settings import Settings
from store.db import make_engine, migrate
from tests.billing_harness import BillingService
from tests.conftest import start_time_skipping
from tests.harness import AGENT, LEAD, dispute_input
from tests.smtp_sink import SmtpSink
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

OUT = Path(__file__).parent


async def _until(probe, accept) -> object:
    for _ in range(300):
        try:
            value = await probe()
        except Exception:  # not started yet
            value = None
        if value is not None and accept(value):
            return value
        await asyncio.sleep(0.1)
    raise RuntimeError("never happened")


async def main(name: str) -> None:
    tmp = Path(tempfile.mkdtemp())
    ledger = BillingService(f"sqlite:///{tmp / 'billing.db'}")
    ledger.start()
    due = date.today() - timedelta(days=10)
    ledger.put_customer("C1", currency="EUR")
    ledger.put_invoice("INV-1", "C1", "900.00", due, due - timedelta(days=30))
    mail = SmtpSink()
    mail.start()
    env = await start_time_skipping()
    engine = make_engine(f"sqlite:///{tmp / 'casebook.db'}")
    migrate(engine)
    settings = Settings(smtp_host="127.0.0.1", smtp_port=mail.port, billing_url=ledger.url)
    async with build_worker(env.client, "rec", engine, settings):
        inp = dispute_input("80.00", region="24x7", case_id="DSP-RECORDED-LADDER")
        h = await env.client.start_workflow(CaseWorkflow.run, inp, id=inp.case_id, task_queue="rec")
        case = await _until(lambda: h.query(CaseWorkflow.snapshot), lambda c: bool(c.tasks))
        task_id = case.tasks[0].id
        await h.execute_update(
            "claim_task", ClaimTask(task_id=task_id, actor=AGENT), result_type=CommandResult
        )
        await h.execute_update(
            "escalate",
            EscalateCase(actor=AGENT, reason="customer threatens to leave", task_id=task_id),
            result_type=CommandResult,
        )
        esc = env.client.get_workflow_handle(f"{inp.case_id}.e1")
        await _until(lambda: esc.query("snapshot", result_type=EscalationSnapshot), bool)

        async def act(action: str) -> None:
            await esc.execute_update(
                "act",
                LeadAction(action=action, actor=LEAD, note=action),
                result_type=EscalationSnapshot,
            )

        await act("acknowledge")
        await env.sleep(timedelta(hours=5))  # the lead's 4 h run out: raised to the manager
        raised = await esc.query("snapshot", result_type=EscalationSnapshot)
        assert raised.level_name == "manager", raised
        await act("resolve")
        await esc.result()
        (OUT / f"{name}.json").write_text((await esc.fetch_history()).to_json())
        await h.terminate("recorded")
    await env.shutdown()
    mail.stop()
    ledger.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
