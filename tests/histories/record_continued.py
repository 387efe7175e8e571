"""Record a case that continued as new (patch `continue-as-new`): a looping case whose run
hands over after every few Updates. Run `.venv/bin/python tests/histories/record_continued.py`;
it writes only `continued_run1.json` (the run that handed over) and `continued_run2.json`
(the run that went on from the carried state)."""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from audit.runs import fetch_runs
from domain.case_models import ClaimTask, CommandResult, CompleteTask, ReleaseTask
from store.db import make_engine, migrate
from tests.harness import AGENT
from tests.test_bounded_history import looping_case
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

OUT = Path(__file__).parent


async def main() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path="/work/main/.venv/bin/temporal",
        data_converter=pydantic_data_converter,
    )
    try:
        await record(env)
    finally:
        await env.shutdown()


async def record(env: WorkflowEnvironment) -> None:
    engine = make_engine("sqlite:////tmp/rec-continued.db")
    migrate(engine)
    async with build_worker(env.client, "rec", engine):
        inp = looping_case().model_copy(
            update={"case_id": "DSP-RECORDED-CONTINUED", "continue_after_updates": 4}
        )
        h = await env.client.start_workflow(CaseWorkflow.run, inp, id=inp.case_id, task_queue="rec")
        task_id = f"{inp.case_id}.t1"
        for _ in range(2):
            for update, cmd in (
                ("claim_task", ClaimTask(task_id=task_id, actor=AGENT)),
                ("release_task", ReleaseTask(task_id=task_id, actor=AGENT)),
            ):
                await h.execute_update(update, cmd, result_type=CommandResult)
        await h.execute_update(
            "claim_task", ClaimTask(task_id=task_id, actor=AGENT), result_type=CommandResult
        )
        done = CompleteTask(task_id=task_id, actor=AGENT, outcome="again")
        await h.execute_update("complete_task", done, result_type=CommandResult)
        await asyncio.sleep(2)  # the run hands over
        next_task = ClaimTask(task_id=f"{inp.case_id}.t2", actor=AGENT)
        await h.execute_update("claim_task", next_task, result_type=CommandResult)
        await asyncio.sleep(2)  # the projection of the new run's first change
        runs = await fetch_runs(env.client, inp.case_id)
        assert len(runs) == 2, len(runs)
        for n, run in enumerate(runs, 1):
            (OUT / f"continued_run{n}.json").write_text(run.to_json())
        await h.terminate("recorded")


asyncio.run(main())
