"""Facts and KPIs on SQLite and PostgreSQL: a known week of cases, counted by hand.

The cases move through the same pure code the workflow runs (`case_logic`, `case_sla`),
and are projected the ways production projects them: the API's full snapshots, the
workflow's snapshots carrying only new history entries, late and repeated writes, and a
rebuild. Every fact must be counted once, whatever the order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select

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
from domain.escalation_models import EscalationInput, EscalationKind
from reports import kpis
from reports.kpis import ReportFilter
from store.read_model import project_escalation, project_snapshot, replace_case
from store.tables import FactRow
from tests.harness import AGENT, LEAD, case_input, opened_dispute
from workflows import case_core, case_logic, case_sla
from workflows.escalation_logic import open_escalation

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
BOB = Actor(name="bob", role=Role.AGENT, queues=["disputes-tier1"], cross_vendor=True)


class Projector:
    """Projects a case after every change the way the workflow's activity does (only the
    history entries not sent yet), and keeps every snapshot to replay them later."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sent = 0
        self.written: list[CaseSnapshot] = []

    def __call__(self, case: CaseSnapshot) -> None:
        partial = case.model_copy(
            deep=True,
            update={"history": case.history[self.sent :], "history_offset": self.sent},
        )
        self.sent = len(case.history)
        self.written.append(partial)
        project_snapshot(self.engine, partial)


def _vendor() -> str:
    return f"v-{uuid.uuid4().hex[:6]}"


def _dispute(vendor: str, amount: str = "200.00", reason: str = "pricing") -> Any:
    # Version 2: its ends close the case at once (v3 first closes the dispute in billing,
    # an activity these pure scenarios do not run).
    inp = case_input("dispute", amount, region="24x7", reason_code=reason, version=2)
    return inp.model_copy(update={"vendor": vendor})


def _work_week(engine: Engine, vendor: str) -> dict[str, Any]:
    """Three disputes on a 24x7 calendar (business time = wall time), with known answers.

    A: triage claimed at +1h by ana, accepted at +2h; investigate claimed +3h, paused
       +4h..+6h, found valid at +8h (credit 150 within the threshold) -> credited.
    B: triage claimed +2h by bob, reassigned to ana at +3h (a fresh 4h SLA), breached at
       +7h, done at +8h as not_a_dispute (the case closes).
    C: triage claimed +1h by ana, accepted +1.5h; investigate need_info +2h ->
       await_customer info_received +3h -> investigate again (a loop back), still open.
    """
    a_in, b_in, c_in = (_dispute(vendor) for _ in range(3))
    t = MONDAY
    a = opened_dispute(a_in, t)
    pa = Projector(engine)
    pa(a)
    _do(a, pa, t + H, claim=AGENT)
    _do(a, pa, t + 2 * H, complete=(AGENT, "accept", {}), tpl=a_in)
    inv = a.tasks[-1].id
    _do(a, pa, t + 3 * H, claim=AGENT, task=inv)
    case_sla.pause(a, PauseTask(task_id=inv, actor=AGENT, reason="docs"), t + 4 * H)
    pa(a)
    case_sla.resume(a, ResumeTask(task_id=inv, actor=AGENT), t + 6 * H)
    pa(a)
    data = {"credit_amount": "150.00", "invoice_id": "INV-1", "root_cause": "price list"}
    _do(a, pa, t + 8 * H, complete=(AGENT, "valid", data), tpl=a_in, task=inv)
    # Billing's answer and the closing, as the workflow would record them.
    a.data = {**a.data, "credit_memo": {"amount": "150.00", "id": "CM-1"}}
    a.status, a.closed_at, a.resolution = a.status.CLOSED, t + 9 * H, "credited"
    case_core.record(a, t + 9 * H, "case_closed")
    pa(a)

    b = opened_dispute(b_in, t)
    pb = Projector(engine)
    pb(b)
    _do(b, pb, t + 2 * H, claim=BOB)
    tid = b.tasks[0].id
    case_sla.reassign(b, ReassignTask(task_id=tid, actor=LEAD, to_user="ana"), t + 3 * H)
    pb(b)
    case_sla.fire_deadlines(b, t + 6.5 * H)  # the warning: 80 % of 4h after +3h
    case_sla.fire_deadlines(b, t + 7 * H)  # the breach: reassigned at +3h, 4h budget
    pb(b)
    _do(b, pb, t + 8 * H, complete=(AGENT, "not_a_dispute", {}), tpl=b_in, task=tid)

    c = opened_dispute(c_in, t)
    pc = Projector(engine)
    pc(c)
    _do(c, pc, t + H, claim=AGENT)
    _do(c, pc, t + 1.5 * H, complete=(AGENT, "accept", {}), tpl=c_in)
    _do(c, pc, t + 1.75 * H, claim=AGENT, task=c.tasks[-1].id)
    _do(c, pc, t + 2 * H, complete=(AGENT, "need_info", {}), tpl=c_in, task=c.tasks[-1].id)
    _do(c, pc, t + 2.5 * H, claim=AGENT, task=c.tasks[-1].id)
    reply = {"reply": "the contract"}
    _do(c, pc, t + 3 * H, complete=(AGENT, "info_received", reply), tpl=c_in, task=c.tasks[-1].id)
    return {"a": a, "b": b, "c": c, "projectors": [pa, pb, pc]}


def _do(
    case: CaseSnapshot,
    project: Projector,
    at: datetime,
    *,
    claim: Actor | None = None,
    complete: tuple[Actor, str, dict[str, Any]] | None = None,
    tpl: Any = None,
    task: str | None = None,
) -> None:
    task_id = task or case.tasks[0].id
    if claim is not None:
        case_logic.claim(case, ClaimTask(task_id=task_id, actor=claim), at)
    if complete is not None:
        actor, outcome, data = complete
        cmd = CompleteTask(task_id=task_id, actor=actor, outcome=outcome, data=data)
        case_logic.complete(case, tpl.template, cmd, at)
    project(case)


def _facts(engine: Engine, vendor: str) -> dict[str, dict[str, Any]]:
    t = FactRow.__table__
    with engine.connect() as connection:
        rows = connection.execute(select(t).where(t.c.vendor == vendor)).mappings()
        return {row["id"]: dict(row) for row in rows}


def _week(vendor: str, **changes: Any) -> ReportFilter:
    return ReportFilter(
        start=MONDAY - 9 * H, end=MONDAY - 9 * H + 7 * 24 * H, vendor=vendor, **changes
    )


@pytest.fixture(scope="module")
def week(engine: Engine) -> dict[str, Any]:
    vendor = _vendor()
    return {"vendor": vendor, **_work_week(engine, vendor)}


def test_one_fact_per_task_escalation_and_case(engine: Engine, week: dict[str, Any]) -> None:
    facts = _facts(engine, week["vendor"])
    a, b, c = week["a"], week["b"], week["c"]
    expected = {f"case:{x.id}" for x in (a, b, c)} | {
        f"task:{t.id}" for x in (a, b, c) for t in x.tasks
    }
    assert set(facts) == expected
    inv = facts[f"task:{a.tasks[1].id}"]
    assert inv["paused_seconds"] == 2 * 3600 and inv["paused_business_seconds"] == 2 * 3600
    assert facts[f"case:{a.id}"]["amount_credited"] == "150.00"
    b_triage = facts[f"task:{b.tasks[0].id}"]
    assert b_triage["reassignments"] == 1 and b_triage["sla_breached"]
    assert _utc(b_triage["first_touch_at"]) == MONDAY + 2 * H  # bob's claim, not ana's
    assert facts[f"case:{c.id}"]["loop_backs"] == 1
    assert facts[f"case:{a.id}"]["loop_backs"] == 0


def test_repeated_late_and_replayed_projections_never_count_twice(
    engine: Engine, week: dict[str, Any]
) -> None:
    before = _facts(engine, week["vendor"])
    for projector in week["projectors"]:
        for snapshot in projector.written:  # the whole sequence again (retries, replays)
            project_snapshot(engine, snapshot)
        for snapshot in reversed(projector.written):  # and late, newest first
            project_snapshot(engine, snapshot)
    for case in (week["a"], week["b"], week["c"]):
        project_snapshot(engine, case)  # the API's full snapshot of the same revision
    assert _facts(engine, week["vendor"]) == before
    for case in (week["a"], week["b"], week["c"]):
        replace_case(engine, case)  # `casebook store rebuild`
    assert _facts(engine, week["vendor"]) == before


def test_a_full_snapshot_between_partial_ones_counts_each_entry_once(engine: Engine) -> None:
    vendor = _vendor()
    inp = _dispute(vendor)
    case = opened_dispute(inp, MONDAY)
    project = Projector(engine)
    project(case)
    tid = case.tasks[0].id
    reassign = ReassignTask(task_id=tid, actor=LEAD, to_user="ana")
    case_sla.reassign(case, reassign, MONDAY + H)
    project_snapshot(engine, case)  # the API writes the Update's full result
    case_sla.reassign(case, reassign, MONDAY + 2 * H)
    # The workflow's activity then carries both reassignments (it sent neither): its
    # newer revision wins, and the first one, already counted, is not counted again.
    project(case)
    project(case)
    assert _facts(engine, vendor)[f"task:{tid}"]["reassignments"] == 2


def test_kpis_equal_the_hand_computed_values(engine: Engine, week: dict[str, Any]) -> None:
    vendor = week["vendor"]
    sla = kpis.run(engine, "sla", _week(vendor)).rows[0]
    # Done with an SLA: A triage, A investigate, B triage (breached), C triage, C investigate,
    # C await_customer; C's second investigate is still open and not breached.
    assert (sla["fell_due"], sla["met"], sla["breached"]) == (6, 5, 1)
    assert sla["attainment"] == round(5 / 6, 4)

    aht = kpis.run(engine, "handle-time", _week(vendor, case_type="dispute")).rows[0]
    # claim -> complete: A 1h, 5h; B 5h (ana's claim by reassignment at +3h -> +8h);
    # C 0.5h, 0.25h, 0.5h. Work time: A's investigate less its 2h pause.
    handles = sorted([1, 5, 5, 0.5, 0.25, 0.5])
    assert aht["completed"] == 6
    assert aht["aht_avg_s"] == round(sum(handles) / 6 * 3600, 1)
    assert aht["work_avg_s"] == round((sum(handles) - 2) / 6 * 3600, 1)

    touch = kpis.run(engine, "first-touch", _week(vendor)).rows[0]
    assert touch["opened"] == 7 and touch["touched"] == 6  # C's second investigate: not yet

    quality = kpis.run(engine, "quality", _week(vendor)).rows[0]
    assert quality["opened"] == 3 and quality["closed"] == 2  # A and B (not a dispute)
    assert quality["first_time_right"] == 2
    assert quality["reopened"] == 1 and quality["reopen_rate"] == round(1 / 3, 4)

    moved = kpis.run(engine, "reassignments", _week(vendor)).rows[0]
    assert (moved["tasks"], moved["reassigned"]) == (7, 1)

    per_agent = kpis.run(engine, "throughput", _week(vendor)).rows
    assert {(r["agent"], r["completed"]) for r in per_agent} == {("ana", 6)}

    disputes = kpis.run(engine, "disputes", _week(vendor)).rows
    assert disputes == [
        {
            "reason_code": "pricing",
            "currency": "EUR",
            "closed": 2,
            "credited_cases": 1,
            "disputed_amount": "400.00",
            "credited_amount": "150.00",
            "cycle_median_s": 8.5 * 3600,
        }
    ]


def test_backlog_ages_in_business_days(engine: Engine, week: dict[str, Any]) -> None:
    f = _week(week["vendor"], as_of=MONDAY + 24 * H + 3 * H)
    row = kpis.run(engine, "backlog", f).rows[0]
    # C's second investigate opened at +3h: exactly one 24x7 day old -> the 1-3d bucket.
    assert row["backlog"] == 1 and row["1-3d"] == 1 and row["0-1d"] == 0


def test_group_by_queue_and_by_day(engine: Engine, week: dict[str, Any]) -> None:
    rows = kpis.run(engine, "sla", _week(week["vendor"], group_by="step")).rows
    assert {r["step"]: r["breached"] for r in rows} == {
        "triage": 1,
        "investigate": 0,
        "await_customer": 0,
    }
    days = kpis.run(engine, "sla", _week(week["vendor"], group_by="day")).rows
    assert [d["fell_due"] for d in days if d["fell_due"]] == [6]
    assert [d["day"] for d in days][:2] == ["2026-11-23", "2026-11-24"] and len(days) == 7


def test_escalation_facts(engine: Engine, week: dict[str, Any]) -> None:
    b = week["b"]
    link = b.escalations[0]
    inp = EscalationInput(
        escalation_id=link.id,
        case_id=b.id,
        case_type=b.type,
        task_id=link.task_id,
        step=link.step,
        kind=EscalationKind.SLA_BREACH,
        reason=link.reason,
        region=b.region,
        vendor=b.vendor,
        opened_by="casebook",
        route=case_input("dispute", "1").escalation_routes["disputes-tier1"],
    )
    esc = open_escalation(inp, MONDAY + 7 * H)
    project_escalation(engine, esc)
    project_escalation(engine, esc)
    rows = kpis.run(engine, "escalations", _week(week["vendor"])).rows
    assert rows[0]["escalations"] == 1 and rows[0]["sla_breach"] == 1
    fact = _facts(engine, week["vendor"])[f"escalation:{link.id}"]
    assert fact["sop_name"] == "dispute" and Decimal(fact["amount"]) == Decimal("200.00")


def _utc(instant: datetime) -> datetime:
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)
