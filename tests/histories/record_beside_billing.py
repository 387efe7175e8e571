"""Record a dispute escalated by hand while its credit memo waits out a billing outage
(patch `billing-beside-the-loop`): the escalation starts during the outage, the call goes
through afterwards.

Run `.venv/bin/python tests/histories/record_beside_billing.py`; it writes
`dispute_escalated_in_outage.json` beside it (time-skipping server, the built-in billing
service over HTTP, stopped for the outage; SMTP on loopback).
"""

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domain.case_models import CommandResult, EscalateCase
from tests.harness import AGENT, case_input
from tests.histories.stack import TASK_QUEUE, recording_stack, work
from workflows.case_workflow import CaseWorkflow

OUT = Path(__file__).parent
CASE_ID = "DSP-RECORDED-ESCALATED-IN-OUTAGE"


async def _until(handle, holds) -> None:
    for _ in range(300):
        if holds(await handle.query(CaseWorkflow.snapshot)):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("never happened")


async def main() -> None:
    async with recording_stack() as (env, ledger):
        inp = case_input("dispute", "250.00", case_id=CASE_ID, data={"contact": "ap@c1.test"})
        h = await env.client.start_workflow(
            CaseWorkflow.run, inp, id=CASE_ID, task_queue=TASK_QUEUE
        )
        await _until(h, lambda c: bool(c.tasks))
        await work(h, f"{CASE_ID}.t1", "accept")
        ledger.stop()
        await work(h, f"{CASE_ID}.t2", "valid")
        await env.sleep(timedelta(seconds=10))  # the credit memo's first round fails
        await _until(h, lambda c: c.outages != [])
        await h.execute_update(
            "escalate",
            EscalateCase(actor=AGENT, reason="credit memo stuck"),
            result_type=CommandResult,
        )
        await _until(h, lambda c: bool(c.escalations) and c.escalations[0].started)
        ledger.start()
        await env.sleep(timedelta(seconds=10))
        await h.result()
        (OUT / "dispute_escalated_in_outage.json").write_text((await h.fetch_history()).to_json())
        await env.client.get_workflow_handle(f"{CASE_ID}.e1").terminate("recorded")


if __name__ == "__main__":
    asyncio.run(main())
