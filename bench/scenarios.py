"""Intake, claim and whole-case scenarios: Casebook through its HTTP API, as agents use it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import baseline
from bench.casebook_api import OUTCOMES, QUEUE, Headers
from bench.context import Bench
from bench.cpu import cpu_used, per_unit
from bench.load import run_concurrently, timed
from bench.progress import say
from bench.stats import latency_ms, percentile
from domain.case_models import Role

VISIBLE_POLL_S = 0.01
VISIBLE_TIMEOUT_S = 60.0
TOP_UP_CONCURRENCY = 20
CLAIM_MAX_EMPTY = 50  # 204s in a row that end a claim run (the queue ran dry)


async def open_many(bench: Bench, count: int) -> list[dict[str, Any]]:
    """Open `count` disputes as fast as the API takes them (setup, not measured)."""
    cases: list[dict[str, Any]] = []

    async def one(_: int) -> None:
        cases.append(await bench.api.open_dispute_patiently(bench.agent))

    await run_concurrently(range(count), TOP_UP_CONCURRENCY, one)
    return cases


async def intake(bench: Bench) -> dict[str, float]:
    """Cases per second through POST /cases; latency until the first task is in the inbox."""
    count, concurrency = bench.sizes.intake_cases, bench.sizes.concurrency
    posts: list[float] = []
    visible: list[float] = []
    watchers: list[asyncio.Task[None]] = []

    async def one(_: int) -> None:
        sent = time.perf_counter()
        case = await timed(bench.api.open_dispute(bench.agent), posts)
        watchers.append(asyncio.create_task(_until_visible(bench, case["id"], sent, visible)))

    elapsed = await run_concurrently(range(count), concurrency, one)
    await asyncio.gather(*watchers)
    return {
        "cases_per_s": count / elapsed,
        **latency_ms("post", posts),
        **latency_ms("visible", visible),
    }


async def _until_visible(bench: Bench, case_id: str, sent: float, into: list[float]) -> None:
    """Poll the inbox (GET /tasks) until the case's first task is there."""
    while time.perf_counter() - sent < VISIBLE_TIMEOUT_S:
        if await bench.api.tasks(bench.agent, queue=QUEUE, case_id=case_id):
            into.append(time.perf_counter() - sent)
            return
        await asyncio.sleep(VISIBLE_POLL_S)
    raise TimeoutError(f"the first task of {case_id} never reached the inbox")


async def claim(bench: Bench) -> dict[str, float]:
    """Agents looping claim-next -> complete, for each number of agents; baseline alongside."""
    results: dict[str, float] = {}
    for agents in bench.sizes.claim_agents:
        await _stock_queue(bench, bench.sizes.claims)
        headers = [bench.target.add_user(Role.AGENT, [QUEUE]) for _ in range(agents)]
        say(f"claim: {agents} agents, {bench.sizes.claims} claims")
        results.update(await _claim_run(bench, headers, bench.sizes.claims))
    return results


async def baseline_claims(bench: Bench) -> dict[str, float]:
    """The same loop on raw Temporal: Update claim then Update complete, no discovery."""
    results: dict[str, float] = {}
    for agents in bench.sizes.claim_agents:
        results.update(await baseline.claims(bench.baseline, bench.sizes.claims, agents))
    return results


async def _stock_queue(bench: Bench, tasks: int) -> None:
    """Enough open tasks in the queue for a claim run (each case gives two, one at a time)."""
    missing = tasks - await asyncio.to_thread(bench.open_tasks)
    if missing > 0:
        say(f"claim: opening {missing} cases so the queue holds {tasks} open tasks")
        await open_many(bench, missing)


async def _claim_run(bench: Bench, agents: list[Headers], claims: int) -> dict[str, float]:
    """Each agent: claim-next, complete, again, until `claims` claims are won in all."""
    latencies: list[float] = []
    state = {"left": claims, "empty": 0, "empty_in_a_row": 0}

    async def agent(headers: Headers) -> None:
        while state["left"] > 0 and state["empty_in_a_row"] < CLAIM_MAX_EMPTY:
            state["left"] -= 1
            sent = time.perf_counter()
            task = await bench.api.claim_next(headers)
            if task is None:  # 204: this agent won none of the candidates it tried
                state["left"] += 1
                state["empty"] += 1
                state["empty_in_a_row"] += 1
                continue
            latencies.append(time.perf_counter() - sent)
            state["empty_in_a_row"] = 0
            await bench.api.complete(headers, task["id"], OUTCOMES[task["step"]])

    started = time.perf_counter()
    await asyncio.gather(*(agent(h) for h in agents))
    elapsed = time.perf_counter() - started
    n = len(agents)
    return {
        f"c{n}_claims_per_s": len(latencies) / elapsed,
        **latency_ms(f"c{n}_claim", latencies),
        f"c{n}_claim_next_204": float(state["empty"]),
    }


async def whole_case(bench: Bench) -> tuple[dict[str, float], list[str]]:
    """Disputes from POST /cases to a closed workflow; returns the figures and the case ids."""
    closed: list[str] = []
    durations: list[float] = []

    async def one(_: int) -> None:
        started = time.perf_counter()
        case_id = await _work_a_dispute(bench, bench.agent)
        await bench.temporal.get_workflow_handle(case_id).result()
        durations.append(time.perf_counter() - started)
        closed.append(case_id)

    count = bench.sizes.whole_cases
    with cpu_used(bench.processes) as used:
        elapsed = await run_concurrently(range(count), bench.sizes.concurrency, one)
        await _archives_done(bench, closed)
    figures = {
        "cases_per_s": count / elapsed,
        "case_p50_ms": percentile(durations, 50) * 1000,
        "case_p99_ms": percentile(durations, 99) * 1000,
        **per_unit(used, count, "cpu_per_case"),
    }
    return figures, closed


async def whole_case_once(bench: Bench) -> str:
    """One dispute worked to its close and its workflow finished (a warm-up)."""
    case_id = await _work_a_dispute(bench, bench.agent)
    await bench.temporal.get_workflow_handle(case_id).result()
    return case_id


async def _work_a_dispute(bench: Bench, agent: Headers) -> str:
    """Open, then claim and complete each task until the case closes (triage, investigate)."""
    case = await bench.api.open_dispute(agent)
    task = await bench.api.first_task(agent, case)
    while True:
        await bench.api.claim(agent, task["id"])
        await bench.api.complete(agent, task["id"], OUTCOMES[task["step"]])
        following = await bench.api.tasks(agent, case_id=case["id"], status="open")
        if not following:
            return case["id"]
        task = following[0]


async def _archives_done(bench: Bench, case_ids: list[str]) -> None:
    """Let each case's archive child finish, so its work does not bleed into what follows."""
    for case_id in case_ids:
        await bench.temporal.get_workflow_handle(f"{case_id}.archive").result()
