"""The case workflow on Temporal's time-skipping test server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from domain.case_models import (
    Actor,
    CaseInput,
    CaseSnapshot,
    ClaimTask,
    CompleteTask,
    ReleaseTask,
    Role,
    Task,
)
from store.tables import CaseRow, TaskRow
from tests.harness import AGENT, LEAD, command, dispute_input, terminate_cases
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def worker_queue(
    time_skipping: WorkflowEnvironment, sqlite_engine: Engine
) -> AsyncIterator[str]:
    queue = f"wf-{uuid.uuid4().hex[:8]}"
    async with build_worker(time_skipping.client, queue, sqlite_engine):
        yield queue
        await terminate_cases(time_skipping.client, STARTED.pop(queue, []))


STARTED: dict[str, list[str]] = {}


async def _start(env: WorkflowEnvironment, queue: str, inp: CaseInput) -> Any:
    STARTED.setdefault(queue, []).append(inp.case_id)
    return await env.client.start_workflow(CaseWorkflow.run, inp, id=inp.case_id, task_queue=queue)


async def _step(handle, update: str, cmd: object) -> CaseSnapshot:
    return await command(handle, update, cmd)


async def _open_task(handle: Any) -> Task:
    """The case's open task, once there (a dispute first marks its invoices in billing)."""
    for _ in range(300):
        state = await handle.query(CaseWorkflow.snapshot)
        task = next((t for t in state.tasks if t.status == "open"), None)
        if task is not None:
            return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"no open task: {state.current_step} {state.history}")


async def test_refused_updates_leave_no_trace(
    time_skipping: WorkflowEnvironment, worker_queue: str
) -> None:
    inp = dispute_input("10.00")
    handle = await _start(time_skipping, worker_queue, inp)
    task_id = (await _open_task(handle)).id
    outsider = Actor(name="oz", role=Role.AGENT, queues=["collections"], cross_vendor=True)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await _step(handle, "claim_task", ClaimTask(task_id=task_id, actor=outsider))
    assert refused.value.cause.type == "forbidden"  # type: ignore[union-attr]
    before = await handle.query(CaseWorkflow.snapshot)
    await _step(handle, "claim_task", ClaimTask(task_id=task_id, actor=AGENT))
    with pytest.raises(WorkflowUpdateFailedError) as wrong:
        await _step(
            handle, "complete_task", CompleteTask(task_id=task_id, actor=AGENT, outcome="approve")
        )
    assert wrong.value.cause.type == "invalid"  # type: ignore[union-attr]
    after = await handle.query(CaseWorkflow.snapshot)
    assert after.revision == before.revision + 1  # only the successful claim changed it
    events = [e async for e in handle.fetch_history_events()]
    rejected = [
        e for e in events if e.HasField("workflow_execution_update_rejected_event_attributes")
    ]
    assert rejected == []  # validators refuse before anything reaches the history
    await time_skipping.sleep(timedelta(days=30))  # the 4h triage SLA breaches meanwhile
    late = await handle.query(CaseWorkflow.snapshot)
    assert late.status == "open" and late.tasks[0].sla_state == "breached"
    assert [e.id for e in late.escalations] == [f"{inp.case_id}.e1"]


async def test_the_sla_timer_stays_armed_while_its_deadline_stands(
    time_skipping: WorkflowEnvironment, worker_queue: str
) -> None:
    inp = dispute_input("10.00")
    handle = await _start(time_skipping, worker_queue, inp)
    task = await _open_task(handle)
    for update, cmd in [
        ("claim_task", ClaimTask(task_id=task.id, actor=AGENT)),
        ("release_task", ReleaseTask(task_id=task.id, actor=AGENT)),
        ("claim_task", ClaimTask(task_id=task.id, actor=AGENT)),
    ]:
        after = await _step(handle, update, cmd)
        assert after.tasks[0].sla_warning_at == task.sla_warning_at  # the deadline stands
    events = [e async for e in handle.fetch_history_events()]
    started = [e for e in events if e.HasField("timer_started_event_attributes")]
    cancelled = [e for e in events if e.HasField("timer_canceled_event_attributes")]
    assert (len(started), len(cancelled)) == (1, 0)  # one timer for the triage's warning
    await time_skipping.sleep(timedelta(days=30))  # the kept timer still fires: warn, breach
    late = await handle.query(CaseWorkflow.snapshot)
    assert late.tasks[0].sla_state == "breached"
    assert [e.id for e in late.escalations] == [f"{inp.case_id}.e1"]


# Last in the module: a closed case's archive child stops this server skipping time.
async def test_a_case_runs_its_sop_to_the_end_and_projects_every_revision(
    time_skipping: WorkflowEnvironment, worker_queue: str, sqlite_engine: Engine
) -> None:
    inp = dispute_input("5000.00")
    handle = await _start(time_skipping, worker_queue, inp)
    for step, outcome, actor in [
        ("triage", "accept", AGENT),
        ("investigate", "valid", AGENT),
        ("lead_approval", "reject", LEAD),
    ]:
        task = await _open_task(handle)
        assert task.step == step
        await _step(handle, "claim_task", ClaimTask(task_id=task.id, actor=actor))
        await _step(
            handle, "complete_task", CompleteTask(task_id=task.id, actor=actor, outcome=outcome)
        )
    final = await handle.result()
    assert final.status == "closed" and final.resolution == "rejected"
    with Session(sqlite_engine) as session:
        row = session.get(CaseRow, inp.case_id)
        assert row is not None and row.status == "closed" and row.revision == final.revision
        assert row.amount == "5000.00"
        tasks = [session.get(TaskRow, t.id) for t in final.tasks]
        assert all(t is not None and t.status == "done" for t in tasks)
