"""Runs every scenario `repeats` times against one stack, the baseline first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from temporalio.client import WorkflowHistory

from bench import baseline, cost, inbox, scenarios, sla
from bench.audit_replay import available as audit_available
from bench.audit_replay import long_history, replay
from bench.baseline import baseline_worker
from bench.casebook_api import QUEUE, CasebookApi
from bench.context import Bench
from bench.cpu import cpu_used, per_unit
from bench.progress import say
from bench.results import SCENARIOS, Results
from bench.sizes import Sizes
from bench.stack import Target, rss_mib
from domain.case_models import Role
from workflows.client import connect

WARM_UP_CASES = 3
WARM_UP_WORKFLOWS = 5
Figures = dict[str, float]


async def run_all(
    target: Target, sizes: Sizes, repeats: int, only: Sequence[str] = SCENARIOS
) -> Results:
    results = Results()
    processes = target.processes()
    temporal = await connect(target.temporal_address, target.namespace)
    api = CasebookApi.connect(target.api_url)
    try:
        async with baseline_worker(temporal) as base:
            bench = Bench(
                target=target,
                api=api,
                temporal=temporal,
                baseline=base,
                sizes=sizes,
                agent=target.add_user(Role.AGENT, [QUEUE]),
                lead=target.add_user(Role.LEAD, ["disputes-leads"]),
                processes=processes,
            )
            closed = await _warm_up(bench)
            pid = processes.get("worker")
            bench.worker_rss_idle_mib = rss_mib(pid) if pid else None
            await _run_scenarios(bench, results, repeats, closed, set(only) | {"baseline"})
    finally:
        await api.close()
    return results


async def _warm_up(bench: Bench) -> list[str]:
    """First workflows pay for imports and caches: run a few before measuring anything.

    Returns the closed cases' ids."""
    say("warm-up")
    await baseline.whole_workflows(bench.baseline, WARM_UP_WORKFLOWS, WARM_UP_WORKFLOWS)
    return [await scenarios.whole_case_once(bench) for _ in range(WARM_UP_CASES)]


async def _run_scenarios(
    bench: Bench, results: Results, repeats: int, closed: list[str], only: set[str]
) -> None:
    """Every scenario in `only`, in the order of SCENARIOS."""

    async def whole_case() -> Figures:
        figures, case_ids = await scenarios.whole_case(bench)
        closed.extend(case_ids)
        return figures

    plan: list[tuple[str, Callable[[], Awaitable[Figures]]]] = [
        ("baseline", lambda: _baseline(bench)),
        ("intake", lambda: scenarios.intake(bench)),
        ("claim", lambda: scenarios.claim(bench)),
        ("whole_case", whole_case),
        ("cost_per_case", lambda: cost.cost_per_case(bench, closed)),
        (
            "sla_timers",
            lambda: sla.sla_timers(bench, results.value("baseline", "workflows_per_s")),
        ),
    ]
    for scenario, run in plan:
        if scenario in only:
            await _repeat(results, scenario, repeats, run)
    if "inbox" in only:
        await _inbox(bench, results, repeats)
    if "audit_replay" in only:
        await _audit(bench, results, repeats)


async def _repeat(
    results: Results, scenario: str, repeats: int, run: Callable[[], Awaitable[Figures]]
) -> None:
    """Run a scenario `repeats` times; a failure is noted and ends that scenario only."""
    for repeat in range(1, repeats + 1):
        say(f"{scenario}: run {repeat}/{repeats}")
        started = time.perf_counter()
        try:
            results.add(scenario, await run())
        except Exception as exc:
            say(f"{scenario}: FAILED: {type(exc).__name__}: {exc}")
            results.note(scenario, f"failed: {type(exc).__name__}: {exc}")
            results.failed.append(scenario)
            return
        say(f"{scenario}: run {repeat}/{repeats} took {time.perf_counter() - started:.1f}s")


async def _baseline(bench: Bench) -> Figures:
    count = bench.sizes.baseline_workflows
    with cpu_used(bench.processes) as used:
        figures = await baseline.whole_workflows(bench.baseline, count, bench.sizes.concurrency)
    figures.update(per_unit(used, count, "cpu_per_workflow"))
    figures.update(await scenarios.baseline_claims(bench))
    return figures


async def _inbox(bench: Bench, results: Results, repeats: int) -> None:
    try:
        await _repeat(results, "inbox", repeats, lambda: inbox.inbox_sqlite(bench))
    finally:
        await asyncio.to_thread(inbox.unseed, bench.target.engine)
    say("inbox: PostgreSQL")
    measured = await asyncio.to_thread(
        inbox.inbox_postgresql, bench.sizes.inbox_tasks, bench.sizes.inbox_requests, repeats
    )
    for figures in measured:
        results.add("inbox", figures)
    if not measured:
        results.note("inbox", "PostgreSQL: skipped (not reachable)")


async def _audit(bench: Bench, results: Results, repeats: int) -> None:
    if not audit_available():
        say("audit_replay: skipped: no audit replay yet")
        results.note("audit_replay", "skipped: no audit replay yet")
        results.skipped.append("audit_replay")
        return
    histories: list[list[WorkflowHistory]] = []  # one case: its runs

    async def run() -> Figures:
        if not histories:
            histories.append(await long_history(bench))
            await replay(histories[0])  # the first replay also loads the code into the sandbox
        return await replay(histories[0])

    await _repeat(results, "audit_replay", repeats, run)
