"""Audit: how long replaying a case history of about 1,000 events takes.

The history is grown through the API (an agent claiming and releasing the triage task),
then replayed with the product's own `audit.replay.replay_case` in this process.
"""

from __future__ import annotations

import importlib.util
import time

from temporalio.client import WorkflowHistory

from bench.context import Bench
from bench.progress import say

CYCLES_PER_CHECK = 20


def available() -> bool:
    """Whether the audit issue has landed (its replay exists in this checkout)."""
    return importlib.util.find_spec("audit.replay") is not None


async def long_history(bench: Bench) -> WorkflowHistory:
    """A case whose history holds at least `audit_events` events."""
    case = await bench.api.open_dispute(bench.agent)
    task_id = (await bench.api.first_task(bench.agent, case))["id"]
    handle = bench.temporal.get_workflow_handle(case["id"])
    while True:
        for _ in range(CYCLES_PER_CHECK):
            await bench.api.claim(bench.agent, task_id)
            await bench.api.release(bench.agent, task_id)
        history = await handle.fetch_history()
        if len(history.events) >= bench.sizes.audit_events:
            say(f"audit: {case['id']} has {len(history.events)} events")
            return history


async def replay(history: WorkflowHistory) -> dict[str, float]:
    """One replay of `history` against the current code, timed."""
    from audit.replay import replay_case

    started = time.perf_counter()
    verdict = await replay_case(history)
    elapsed = time.perf_counter() - started
    return {
        "events": verdict.events,
        "replay_s": elapsed,
        "events_per_s": verdict.events / elapsed,
        "deterministic": float(verdict.deterministic),
    }
