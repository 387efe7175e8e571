"""The baseline, measured on the stack's own Temporal server with a worker in this process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from bench.baseline_workflow import BaselineWorkflow, record_outcome
from bench.history import HistoryCost, history_cost
from bench.load import run_concurrently, timed
from bench.stats import latency_ms


@dataclass(frozen=True)
class Baseline:
    client: Client
    task_queue: str

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
        client, task_queue=task_queue, workflows=[BaselineWorkflow], activities=[record_outcome]
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
