"""Record a case whose work was raised twice: the second raise joined the open escalation
(patch `escalations-join`). Run `.venv/bin/python tests/histories/record_joins.py`; it writes
only `dispute_escalation_joined.json` (the other histories keep the code they were
recorded under)."""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain.case_models import ClaimTask, CommandResult, EscalateCase
from store.db import make_engine, migrate
from tests.harness import AGENT, dispute_input
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

OUT = Path(__file__).parent


async def main() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=".venv/bin/temporal", data_converter=pydantic_data_converter
    )
    engine = make_engine("sqlite:////tmp/rec-joins.db")
    migrate(engine)
    async with build_worker(env.client, "rec", engine):
        inp = dispute_input("80.00", region="24x7", case_id="DSP-RECORDED-JOINED")
        h = await env.client.start_workflow(CaseWorkflow.run, inp, id=inp.case_id, task_queue="rec")
        opened = await h.query(CaseWorkflow.snapshot)
        while not opened.tasks:  # the acknowledgement step comes first
            await asyncio.sleep(0.2)
            opened = await h.query(CaseWorkflow.snapshot)
        task_id = opened.tasks[0].id
        await h.execute_update(
            "claim_task", ClaimTask(task_id=task_id, actor=AGENT), result_type=CommandResult
        )
        for reason in ("customer angry", "customer called again"):
            await h.execute_update(
                "escalate",
                EscalateCase(actor=AGENT, reason=reason, task_id=task_id),
                result_type=CommandResult,
            )
            await asyncio.sleep(2)  # the escalation starts, then the note reaches it
        snapshot = await h.query(CaseWorkflow.snapshot)
        assert len(snapshot.escalations) == 1, snapshot.escalations
        assert "escalation_joined" in [e.event for e in snapshot.history]
        (OUT / "dispute_escalation_joined.json").write_text((await h.fetch_history()).to_json())
        await env.client.get_workflow_handle(f"{inp.case_id}.e1").terminate("recorded")
        await h.terminate("recorded")
    await env.shutdown()


asyncio.run(main())
