"""Cost per case: Temporal history events and workflow tasks, and the worker's memory."""

from __future__ import annotations

import asyncio
import math

from bench import baseline
from bench.context import Bench
from bench.history import history_cost
from bench.progress import say
from bench.scenarios import open_many
from bench.stack import rss_mib

HUMAN_TASKS_PER_DISPUTE = 2  # triage and investigate, on the way to closed_credited
SETTLE_S = 3.0  # let the worker finish the last cases' workflow tasks before reading RSS


async def cost_per_case(bench: Bench, closed_case_ids: list[str]) -> dict[str, float]:
    """History of one closed dispute (and its archive child) against one baseline workflow."""
    if not closed_case_ids:
        raise RuntimeError("cost per case needs a closed dispute from the whole-case scenario")
    case_id = closed_case_ids[0]
    case = await history_cost(bench.temporal, [case_id])
    with_archive = await history_cost(bench.temporal, [case_id, f"{case_id}.archive"])
    base = await baseline.cost(bench.baseline)
    say(f"cost: events by type in {case_id}: {dict(case.by_type)}")
    return {
        "events_per_case": case.events,
        "workflow_tasks_per_case": case.workflow_tasks,
        "events_per_case_with_archive": with_archive.events,
        "workflow_tasks_per_case_with_archive": with_archive.workflow_tasks,
        "events_per_human_task": case.events / HUMAN_TASKS_PER_DISPUTE,
        "workflow_tasks_per_human_task": case.workflow_tasks / HUMAN_TASKS_PER_DISPUTE,
        "baseline_events_per_human_task": base.events,
        "baseline_workflow_tasks_per_human_task": base.workflow_tasks,
        **await worker_memory(bench),
    }


async def worker_memory(bench: Bench) -> dict[str, float]:
    """RSS of the stack's worker once `open_cases` cases are open (opened here if need be).

    The worker keeps at most 1,000 workflows in its cache (the SDK's default): beyond that
    many open cases, the figure is that of a full cache."""
    pid = bench.processes.get("worker")
    if pid is None:
        say("cost: no worker process of this stack on this machine: no memory figures")
        return {}
    missing = bench.sizes.open_cases - await asyncio.to_thread(bench.open_cases)
    if missing > 0:
        say(f"cost: opening {missing} cases for {bench.sizes.open_cases} open cases")
        await open_many(bench, missing)
    await asyncio.sleep(SETTLE_S)
    open_now = await asyncio.to_thread(bench.open_cases)
    rss = rss_mib(pid)
    idle = bench.worker_rss_idle_mib
    per_case = (rss - idle) * 1024 / open_now if idle is not None and open_now else math.nan
    return {
        "open_cases": open_now,
        "worker_rss_idle_mib": idle if idle is not None else math.nan,
        "worker_rss_mib": rss,
        "worker_kib_per_open_case": per_case,
    }
