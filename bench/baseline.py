"""The baseline, measured on the stack's own Temporal server with a worker in this process."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from bench.baseline_workflow import (
    FIRED_AT,
    BaselineSlaWorkflow,
    BaselineWorkflow,
    record_breach,
    record_outcome,
)
from bench.history import HistoryCost, history_cost
from bench.load import run_concurrently, timed
from bench.stats import latency_ms


@dataclass
class Baseline:
    client: Client
    task_queue: str
    idle_sla_workflows: int = 0  # open, their timer a day away (the SLA scenario's backdrop)

    async def start(self) -> WorkflowHandle[BaselineWorkflow, str]:
        return await self.client.start_workflow(
            BaselineWorkflow.run,
            "t1",
            id=f"bench-baseline-{uuid.uuid4().hex[:12]}",
            task_queue=self.task_queue,
        )


@asynccontextmanager
async def baseline_worker(client: Client) -> AsyncIterator[Baseline]:
    """A worker for the baseline workflow on a task queue of its own."""
    task_queue = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BaselineWorkflow, BaselineSlaWorkflow],
        activities=[record_outcome, record_breach],
    ):
        yield Baseline(client, task_queue)


async def whole_workflows(baseline: Baseline, count: int, concurrency: int) -> dict[str, float]:
    """Workflows per second, start to result, with `concurrency` clients."""
    starts: list[float] = []
    updates: list[float] = []

    async def one(_: int) -> None:
        handle = await timed(baseline.start(), starts)
        await timed(handle.execute_update(BaselineWorkflow.claim, "agent"), updates)
        await timed(handle.execute_update(BaselineWorkflow.complete, "done"), updates)
        await handle.result()

    elapsed = await run_concurrently(range(count), concurrency, one)
    return {
        "workflows_per_s": count / elapsed,
        **latency_ms("start", starts),
        **latency_ms("update", updates),
    }


async def claims(baseline: Baseline, count: int, agents: int) -> dict[str, float]:
    """`agents` concurrent clients claiming then completing open baseline workflows."""
    handles = [await baseline.start() for _ in range(count)]
    claim_latency: list[float] = []

    async def work(handle: WorkflowHandle[BaselineWorkflow, str]) -> None:
        await timed(handle.execute_update(BaselineWorkflow.claim, "agent"), claim_latency)
        await handle.execute_update(BaselineWorkflow.complete, "done")

    elapsed = await run_concurrently(handles, agents, work)
    for handle in handles:
        await handle.result()
    return {
        f"c{agents}_claims_per_s": count / elapsed,
        **latency_ms(f"c{agents}_claim_update", claim_latency),
    }


async def cost(baseline: Baseline) -> HistoryCost:
    """History events and workflow tasks of one baseline workflow (one human task)."""
    handle = await baseline.start()
    await handle.execute_update(BaselineWorkflow.claim, "agent")
    await handle.execute_update(BaselineWorkflow.complete, "done")
    await handle.result()
    return await history_cost(baseline.client, [handle.id])


IDLE_SLA_DAYS = 1.0  # the idle SLA workflows' timer: far beyond any run of the bench
STARTS_AT_ONCE = 50
ASLEEP_POLL_S = 0.2


async def top_up_idle_sla_workflows(baseline: Baseline, count: int) -> None:
    """`count` SLA workflows open and idle (timers a day away), as Casebook's idle cases."""
    missing = count - baseline.idle_sla_workflows
    if missing <= 0:
        return
    due = time.time() + IDLE_SLA_DAYS * 86_400

    async def idle(_: int) -> None:
        await _until_asleep(await _start_sla(baseline, due))

    await run_concurrently(range(missing), STARTS_AT_ONCE, idle)
    baseline.idle_sla_workflows += missing


async def _until_asleep(handle: WorkflowHandle[BaselineSlaWorkflow, None]) -> None:
    """Until the workflow's first task ran (its timer armed): the backdrop is idle before
    any lag is measured, not a backlog of first workflow tasks in the worker."""
    while (await handle.describe()).raw_description.HasField("pending_workflow_task"):
        await asyncio.sleep(ASLEEP_POLL_S)


async def sla_timers(baseline: Baseline, dues: list[float]) -> list[float]:
    """One SLA workflow per deadline; each one's lag from deadline to activity, in seconds.

    The lags come in the order of `dues`; NaN where the activity never ran."""
    ids: dict[float, str] = {}

    async def start(due: float) -> None:
        ids[due] = (await _start_sla(baseline, due)).id

    await run_concurrently(dues, STARTS_AT_ONCE, start)
    for workflow_id in ids.values():
        await baseline.client.get_workflow_handle(workflow_id).result()
    return [FIRED_AT.pop(ids[due], math.nan) - due for due in dues]


async def _start_sla(baseline: Baseline, due: float) -> WorkflowHandle[BaselineSlaWorkflow, None]:
    return await baseline.client.start_workflow(
        BaselineSlaWorkflow.run,
        due,
        id=f"bench-sla-{uuid.uuid4().hex[:12]}",
        task_queue=baseline.task_queue,
    )
