"""KPIs from real cases: five disputes worked through the real CaseWorkflow on Temporal's
time-skipping test server, projected by the worker's own activities into SQLite and into
PostgreSQL, then every KPI compared with the value computed by hand below.

The timeline, in hours after the cases open at t0 (region 24x7: business time = wall time):

    t0  A, B, C, D open (triage, 4h SLA each)
    t1  ana claims A and D's triage; bob claims B's
    t2  A and D's triage accepted: their investigations open, ana claims both;
        the lead reassigns B's triage from bob to ana (a fresh 4h SLA: due t6)
    t3  A's investigation paused (waiting on the customer); D's found `need_info`:
        D's await_customer opens, ana claims it; E opens (triage, untouched)
    t4  C's triage breaches (never claimed): an sla_breach escalation opens
    t4.5 the lead acknowledges it
    t5  A resumed (paused 2h); the lead resolves the escalation; D's customer answers:
        D's investigation opens again (a loop back), ana claims it; then, with no time
        passing any more, A found invalid, B not a dispute, D invalid: three cases close

Updates land a little after the instant slept to, so durations are compared within a
few seconds; counts and rates exactly. The server is one per database: after a case
closes, the time-skipping server stops skipping time (tests/conftest.py), so every
closing comes after the last sleep.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest_asyncio
from sqlalchemy import Engine, select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain.case_models import (
    Actor,
    CaseSnapshot,
    ClaimTask,
    CompleteTask,
    PauseTask,
    ReassignTask,
    ResumeTask,
    Role,
)
from domain.escalation_models import EscalationSnapshot, LeadAction
from reports import kpis
from reports.kpis import ReportFilter
from store.read_model import project_snapshot, replace_case
from store.tables import FactRow
from tests.conftest import start_time_skipping
from tests.harness import AGENT, LEAD, case_input, command, eventually, terminate_cases
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

H = timedelta(hours=1)
BOB = Actor(name="bob", role=Role.AGENT, queues=["disputes-tier1"], cross_vendor=True)
# Durations are compared within seconds: the cases open one after the other (each start
# waits for its first task) and the server's clock lands a little after each instant.
SECONDS = 5.0
# An escalation opens when its child workflow starts: seconds after the breach here.
ESCALATION_START = 10.0


class Week:
    """The cases of one run and the server's clock."""

    def __init__(self, env: WorkflowEnvironment, queue: str, vendor: str) -> None:
        self.env, self.queue, self.vendor = env, queue, vendor
        self.handles: dict[str, WorkflowHandle[Any, Any]] = {}
        self.t0: datetime | None = None

    async def open(self, name: str, reason: str) -> None:
        inp = case_input("dispute", "300.00", region="24x7", reason_code=reason, version=2)
        inp = inp.model_copy(update={"vendor": self.vendor})
        self.handles[name] = await self.env.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=self.queue
        )
        await eventually(lambda: self.case(name), lambda c: bool(c.tasks), timeout=20)

    async def case(self, name: str) -> CaseSnapshot:
        return await self.handles[name].query(CaseWorkflow.snapshot)

    async def at(self, hours: float) -> None:
        assert self.t0 is not None
        await self.env.sleep(self.t0 + hours * H - await self.env.get_current_time())

    async def task(self, name: str, step: str) -> str:
        case = await eventually(
            lambda: self.case(name), lambda c: any(t.step == step for t in c.tasks), timeout=20
        )
        return [t for t in case.tasks if t.step == step][-1].id

    async def claim(self, name: str, step: str, who: Actor = AGENT) -> None:
        task = await self.task(name, step)
        await command(self.handles[name], "claim_task", ClaimTask(task_id=task, actor=who))

    async def complete(self, name: str, step: str, outcome: str) -> None:
        task = await self.task(name, step)
        cmd = CompleteTask(task_id=task, actor=AGENT, outcome=outcome, data={})
        await command(self.handles[name], "complete_task", cmd)

    async def escalation(self, name: str) -> WorkflowHandle[Any, Any]:
        case = await eventually(lambda: self.case(name), lambda c: bool(c.escalations), timeout=20)
        return self.env.client.get_workflow_handle(case.escalations[0].id)


async def _work_the_week(week: Week) -> None:
    week.t0 = await week.env.get_current_time()
    for name, reason in (("A", "pricing"), ("B", "pricing"), ("C", "pricing"), ("D", "tax")):
        await week.open(name, reason)
    await week.at(1)
    await week.claim("A", "triage")
    await week.claim("B", "triage", BOB)
    await week.claim("D", "triage")
    await week.at(2)
    for name in ("A", "D"):
        await week.complete(name, "triage", "accept")
        await week.claim(name, "investigate")
    b_triage = await week.task("B", "triage")
    reassign = ReassignTask(task_id=b_triage, actor=LEAD, to_user="ana", to_actor=AGENT)
    await command(week.handles["B"], "reassign_task", reassign)
    await week.at(3)
    a_inv = await week.task("A", "investigate")
    pause = PauseTask(task_id=a_inv, actor=AGENT, reason="awaiting_customer")
    await command(week.handles["A"], "pause_task", pause)
    await week.complete("D", "investigate", "need_info")
    await week.claim("D", "await_customer")
    await week.open("E", "tax")
    await week.at(4.5)
    esc = await week.escalation("C")
    await esc.execute_update(
        "act", LeadAction(action="acknowledge", actor=LEAD), result_type=EscalationSnapshot
    )
    await week.at(5)
    await command(week.handles["A"], "resume_task", ResumeTask(task_id=a_inv, actor=AGENT))
    await esc.execute_update(
        "act", LeadAction(action="resolve", actor=LEAD), result_type=EscalationSnapshot
    )
    await week.complete("D", "await_customer", "info_received")
    await week.claim("D", "investigate")
    # No sleep from here on: the closings.
    await week.complete("A", "investigate", "invalid")
    await week.complete("B", "triage", "not_a_dispute")
    await week.complete("D", "investigate", "invalid")


def _facts(engine: Engine, vendor: str) -> dict[str, dict[str, Any]]:
    t = FactRow.__table__
    with engine.connect() as connection:
        rows = connection.execute(select(t).where(t.c.vendor == vendor)).mappings()
        return {row["id"]: dict(row) for row in rows}


async def _settled(engine: Engine, week: Week) -> dict[str, CaseSnapshot]:
    """The cases' last states, once the worker projected every entry of their histories
    (a closed case still records its emails going out after `case_closed`)."""
    for name in ("A", "B", "D"):
        await asyncio.wait_for(week.handles[name].result(), timeout=30)
    snapshots = {name: await week.case(name) for name in week.handles}
    seen = {f"case:{c.id}": c.history_offset + len(c.history) for c in snapshots.values()}

    async def facts() -> dict[str, dict[str, Any]]:
        return _facts(engine, week.vendor)

    def caught_up(facts: dict[str, dict[str, Any]]) -> bool:
        escalations = [f["status"] for f in facts.values() if f["kind"] == "escalation"]
        counted = {k: f["events_seen"] for k, f in facts.items() if k in seen}
        return counted == seen and escalations == ["resolved"]

    assert caught_up(await eventually(facts, caught_up, timeout=30))
    return snapshots


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def week(engine: Engine) -> AsyncIterator[dict[str, Any]]:
    """The week worked once per database, on a time-skipping server of its own."""
    env = await start_time_skipping()
    queue = f"kpi-{uuid.uuid4().hex[:8]}"
    w = Week(env, queue, f"v-{uuid.uuid4().hex[:6]}")
    try:
        async with build_worker(env.client, queue, engine):
            await _work_the_week(w)
            snapshots = await _settled(engine, w)
            yield {"week": w, "facts": _facts(engine, w.vendor), "snapshots": snapshots}
            await terminate_cases(env.client, [h.id for h in w.handles.values()])
    finally:
        await env.shutdown()


def _period(w: Week, **changes: Any) -> ReportFilter:
    assert w.t0 is not None
    return ReportFilter(start=w.t0 - H, end=w.t0 + 7 * 24 * H, vendor=w.vendor, **changes)


def _run(engine: Engine, w: Week, name: str, **changes: Any) -> list[dict[str, Any]]:
    return kpis.run(engine, name, _period(w, **changes)).rows


def _near(actual: float | None, hours: float, within: float = SECONDS) -> bool:
    return actual is not None and abs(actual - hours * 3600) <= within


def test_sla_attainment(engine: Engine, week: dict[str, Any]) -> None:
    [row] = _run(engine, week["week"], "sla")
    # Done: A triage, A investigate, B triage, D triage, D investigate, D await, D's second
    # investigate (7, all in time); C's triage breached while open (1). E's is not due yet.
    assert (row["fell_due"], row["met"], row["breached"]) == (8, 7, 1)
    assert row["attainment"] == 0.875
    by_step = {r["step"]: r["breached"] for r in _run(engine, week["week"], "sla", group_by="step")}
    assert by_step == {"triage": 1, "investigate": 0, "await_customer": 0}


def test_handle_and_work_time(engine: Engine, week: dict[str, Any]) -> None:
    [row] = _run(engine, week["week"], "handle-time")
    # Claim -> complete: A triage 1h, A investigate 3h (2h of it paused), B triage 3h (ana's
    # claim is the reassignment at t2), D triage 1h, D investigate 1h, D await 2h, D's
    # second investigate 0h.
    handles = [1, 3, 3, 1, 1, 2, 0]
    work = [1, 1, 3, 1, 1, 2, 0]
    assert row["completed"] == 7
    assert _near(row["aht_avg_s"], sum(handles) / 7)
    assert _near(row["aht_median_s"], 1) and _near(row["aht_p90_s"], 3)
    assert _near(row["work_avg_s"], sum(work) / 7)
    assert _near(row["work_median_s"], 1) and _near(row["work_p90_s"], 3)


def test_time_to_first_touch(engine: Engine, week: dict[str, Any]) -> None:
    [row] = _run(engine, week["week"], "first-touch")
    # Nine tasks opened; C's and E's triage never claimed. Waits: A, B (bob), D triage 1h;
    # A, D investigate, D await, D's second investigate claimed as they opened.
    assert (row["opened"], row["touched"]) == (9, 7)
    assert _near(row["first_touch_avg_s"], 3 / 7)
    assert _near(row["first_touch_median_s"], 0) and _near(row["first_touch_p90_s"], 1)


def test_escalation_and_reassignment_rates(engine: Engine, week: dict[str, Any]) -> None:
    [esc] = _run(engine, week["week"], "escalations")
    assert (esc["escalations"], esc["sla_breach"], esc["resolved"]) == (1, 1, 1)
    assert esc["raised_to_manager"] == 0
    assert _near(esc["ack_median_s"], 0.5, ESCALATION_START)
    assert _near(esc["resolve_median_s"], 1, ESCALATION_START)
    [moved] = _run(engine, week["week"], "reassignments")
    assert (moved["tasks"], moved["reassigned"], moved["reassignments"]) == (9, 1, 1)
    assert moved["reassignment_rate"] == round(1 / 9, 4) and moved["loop_backs"] == 1
    [quality] = _run(engine, week["week"], "quality")
    assert (quality["opened"], quality["escalated"]) == (5, 1)  # C
    assert quality["escalation_rate"] == 0.2


def test_first_time_right(engine: Engine, week: dict[str, Any]) -> None:
    [quality] = _run(engine, week["week"], "quality")
    # Closed: A and B straight through; D went back to its investigation.
    assert (quality["closed"], quality["first_time_right"]) == (3, 2)
    assert quality["first_time_right_rate"] == round(2 / 3, 4)
    assert (quality["reopened"], quality["reopen_rate"]) == (1, 0.2)
    throughput = _run(engine, week["week"], "throughput")
    assert [(r["agent"], r["completed"]) for r in throughput] == [("ana", 7)]
    disputes = {r["reason_code"]: r for r in _run(engine, week["week"], "disputes")}
    assert {k: r["closed"] for k, r in disputes.items()} == {"pricing": 2, "tax": 1}
    assert disputes["pricing"]["disputed_amount"] == "600.00"
    assert disputes["pricing"]["credited_cases"] == 0
    assert _near(disputes["tax"]["cycle_median_s"], 5)


def test_backlog_aging(engine: Engine, week: dict[str, Any]) -> None:
    w: Week = week["week"]
    assert w.t0 is not None
    [row] = _run(engine, w, "backlog", as_of=w.t0 + 26 * H)
    # Open at t26: C's triage (26h: 1.08 days, breached) and E's (23h, due at t7).
    assert row["backlog"] == 2 and (row["0-1d"], row["1-3d"]) == (1, 1)
    assert (row["3-7d"], row["7d+"]) == (0, 0)
    assert row["past_sla"] == 2 and row["oldest_business_days"] == 1.08


def test_a_repeated_or_replayed_projection_counts_no_fact_twice(
    engine: Engine, week: dict[str, Any]
) -> None:
    w: Week = week["week"]
    before = _facts(engine, w.vendor)
    assert before == week["facts"]
    reports = {name: kpis.run(engine, name, _period(w)).rows for name in kpis.KPIS}
    for snapshot in week["snapshots"].values():
        project_snapshot(engine, snapshot)  # the same revision again (a retried activity)
        stale = snapshot.model_copy(update={"revision": snapshot.revision - 1})
        project_snapshot(engine, stale)  # a late one
        replace_case(engine, snapshot)  # `casebook store rebuild`: counted from the start
    assert _facts(engine, w.vendor) == before
    assert {name: kpis.run(engine, name, _period(w)).rows for name in kpis.KPIS} == reports
    by_kind = [f["kind"] for f in before.values()]
    assert (by_kind.count("case"), by_kind.count("task"), by_kind.count("escalation")) == (
        5,
        9,
        1,
    )
