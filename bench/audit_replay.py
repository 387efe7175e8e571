"""Audit: how long replaying a case history of about 1,000 events takes.

The history is grown through the API (an agent claiming and releasing the triage task),
then replayed with the product's own `audit.replay.replay_runs` in this process (a long
case continues as new: its events are counted and replayed over all its runs).
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


async def long_history(bench: Bench) -> list[WorkflowHistory]:
    """A case whose history (every run's) holds at least `audit_events` events."""
    from audit.runs import fetch_runs

    case = await bench.api.open_dispute(bench.agent)
    task_id = (await bench.api.first_task(bench.agent, case))["id"]
    while True:
        for _ in range(CYCLES_PER_CHECK):
            await bench.api.claim(bench.agent, task_id)
            await bench.api.release(bench.agent, task_id)
        runs = await fetch_runs(bench.temporal, case["id"])
        events = sum(len(run.events) for run in runs)
        if events >= bench.sizes.audit_events:
            say(f"audit: {case['id']} has {events} events in {len(runs)} run(s)")
            return runs


async def replay(runs: list[WorkflowHistory]) -> dict[str, float]:
    """One replay of the case's runs against the current code, timed."""
    from audit import replay as audit_replay

    audit_replay.forget_ended_runs()  # time the replays, not the memory of ended runs
    started = time.perf_counter()
    verdict = await audit_replay.replay_runs(runs)
    elapsed = time.perf_counter() - started
    return {
        "events": verdict.events,
        "replay_s": elapsed,
        "events_per_s": verdict.events / elapsed,
        "deterministic": float(verdict.deterministic),
    }
