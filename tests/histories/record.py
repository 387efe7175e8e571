"""Record real case histories with the code as it is now: replay tests keep them forever.

Run `.venv/bin/python tests/histories/record.py` before an interpreter change; commit the
JSON files; `tests/test_replay_stored_histories.py` then proves old cases still replay.
"""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain.case_models import ClaimTask, CommandResult, CompleteTask, EscalateCase
from store.db import make_engine, migrate
from tests.harness import AGENT, LEAD, dispute_input
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

OUT = Path(__file__).parent


async def main():
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=".venv/bin/temporal", data_converter=pydantic_data_converter
    )
    engine = make_engine("sqlite:////tmp/rec.db")
    migrate(engine)
    async with build_worker(env.client, "rec", engine):
        # 1: a dispute above the threshold, from intake to close through a lead
        inp = dispute_input("1500.00", region="US", case_id="DSP-RECORDED-CLOSED")
        h = await env.client.start_workflow(CaseWorkflow.run, inp, id=inp.case_id, task_queue="rec")
        for n, (outcome, actor) in enumerate(
            [("accept", AGENT), ("valid", AGENT), ("approve", LEAD)], 1
        ):
            tid = f"{inp.case_id}.t{n}"
            await h.execute_update(
                "claim_task", ClaimTask(task_id=tid, actor=actor), result_type=CommandResult
            )
            await h.execute_update(
                "complete_task",
                CompleteTask(task_id=tid, actor=actor, outcome=outcome, note="n"),
                result_type=CommandResult,
            )
        await h.result()
        (OUT / "dispute_closed.json").write_text((await h.fetch_history()).to_json())
        # 2: a dispute raised by hand, left open
        inp = dispute_input("80.00", region="24x7", case_id="DSP-RECORDED-OPEN")
        h = await env.client.start_workflow(CaseWorkflow.run, inp, id=inp.case_id, task_queue="rec")
        await h.execute_update(
            "claim_task",
            ClaimTask(task_id=f"{inp.case_id}.t1", actor=AGENT),
            result_type=CommandResult,
        )
        await h.execute_update(
            "escalate",
            EscalateCase(actor=AGENT, reason="customer angry"),
            result_type=CommandResult,
        )
        await asyncio.sleep(2)
        (OUT / "dispute_open_escalated.json").write_text((await h.fetch_history()).to_json())
    await env.shutdown()


asyncio.run(main())
