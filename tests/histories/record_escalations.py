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
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domain.case_models import ClaimTask, CommandResult, EscalateCase
from domain.escalation_models import EscalationSnapshot, LeadAction
from tests.harness import AGENT, LEAD, dispute_input
from tests.histories.stack import TASK_QUEUE, recording_stack
from workflows.case_workflow import CaseWorkflow

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
    async with recording_stack() as (env, _):
        inp = dispute_input("80.00", region="24x7", case_id="DSP-RECORDED-LADDER")
        h = await env.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=TASK_QUEUE
        )
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


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
