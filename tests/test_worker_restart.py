"""A worker that goes away mid-case loses nothing: the next worker carries the case on."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from domain.case_models import ClaimTask, CompleteTask
from store.tables import TaskRow
from tests.harness import AGENT, case_input, command, eventually
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_claim_sent_while_no_worker_runs_lands_when_one_starts(
    dev_server: WorkflowEnvironment, sqlite_engine: Engine
) -> None:
    queue = f"restart-{uuid.uuid4().hex[:8]}"
    # Version 2: its triage task opens at once (v3 first marks the dispute in billing).
    inp = case_input("dispute", "90.00", region="US", version=2)
    async with build_worker(dev_server.client, queue, sqlite_engine):
        handle = await dev_server.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=queue
        )
        await handle.query(CaseWorkflow.snapshot)
    # The worker is gone (a deploy, a crash). A claim arrives meanwhile and waits.
    task_id = f"{inp.case_id}.t1"
    claim = asyncio.create_task(
        command(handle, "claim_task", ClaimTask(task_id=task_id, actor=AGENT))
    )
    await asyncio.sleep(1)
    assert not claim.done()
    async with build_worker(dev_server.client, queue, sqlite_engine):  # a new worker process
        claimed = await asyncio.wait_for(claim, timeout=30)
        assert claimed.task(task_id).status == "claimed"  # type: ignore[union-attr]
        done = await command(
            handle, "complete_task", CompleteTask(task_id=task_id, actor=AGENT, outcome="accept")
        )
        assert done.current_step == "investigate"

        def row() -> TaskRow | None:
            with Session(sqlite_engine) as session:
                return session.get(TaskRow, task_id)

        async def probe() -> TaskRow | None:
            return row()

        projected = await eventually(probe, lambda r: r is not None and r.status == "done")
        assert projected is not None and projected.status == "done"
        await handle.terminate("test over")
