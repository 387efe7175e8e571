"""With no worker running, reading or commanding a case is an outage (503), not a 500."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from domain.case_models import Actor, ClaimTask, Role
from tests.harness import case_input
from workflows.case_workflow import CaseWorkflow
from workflows.client import CaseCommandError, command_task, get_case

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_case_with_no_worker_is_unavailable(dev_server: WorkflowEnvironment) -> None:
    inp = case_input("dispute", "100.00", case_id=f"DSP-NOWORKER-{uuid.uuid4().hex[:8]}")
    handle = await dev_server.client.start_workflow(
        CaseWorkflow.run, inp, id=inp.case_id, task_queue=f"nobody-{uuid.uuid4().hex[:8]}"
    )
    try:
        with pytest.raises(CaseCommandError) as read:
            await get_case(dev_server.client, inp.case_id, timedelta(seconds=2))
        assert read.value.kind == "unavailable" and "no worker" in read.value.message
        claim = ClaimTask(task_id=f"{inp.case_id}.t1", actor=Actor(name="a", role=Role.LEAD))
        with pytest.raises(CaseCommandError) as command:
            await command_task(dev_server.client, claim, timedelta(seconds=2))
        assert command.value.kind in ("unavailable", "timeout")
    finally:
        await handle.terminate("test over")
