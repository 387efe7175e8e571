"""The facts the reports count: one per task, escalation and case, derived from snapshots.

Pure builders (`case_facts`, `escalation_fact`) turn a snapshot into fact rows; the
projection (store/read_model.py) writes them in the transaction whose case row its
snapshot won, so a late, repeated or replayed projection never writes a fact twice.

Most of a fact is the snapshot's current state. What only the case's history says (the
first claim, reassignments, the breach, reopens, billing refusals) is counted from the
history entries the fact has not seen yet: a case fact keeps `events_seen`, the absolute
index of the next entry to count, because the workflow's projection carries only the
entries it has not sent before (`CaseSnapshot.history_offset`).

Each fact also carries its durations as integer microseconds (`durations`), so reports
sort and sum integers instead of parsing two instants per fact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.case_models import BILLING_REFUSED, CaseSnapshot, HistoryEntry, SlaState, Task
from domain.escalation_models import EscalationSnapshot
from escalations.calendars import UnknownCalendarError, as_utc, get_calendar
from escalations.sla_clock import SlaClock

Fact = dict[str, Any]

TASK, ESCALATION, CASE = "task", "escalation", "case"
# Events an escalation records when a lead first looks at it (its time to acknowledge).
_LEAD_TOUCHES = ("escalation_acknowledge", "escalation_reassign")


def fact_id(kind: str, subject_id: str) -> str:
    return f"{kind}:{subject_id}"


def case_facts(snapshot: CaseSnapshot, previous: Mapping[str, Fact]) -> list[Fact]:
    """The case's fact and one per task, given the facts already stored for the case."""
    case_prev = previous.get(fact_id(CASE, snapshot.id), {})
    seen = int(case_prev.get("events_seen", 0))
    new = _unseen(snapshot, seen)
    tasks = [
        with_durations(
            _task_fact(snapshot, task, previous.get(fact_id(TASK, task.id), {}), new, index)
        )
        for index, task in enumerate(snapshot.tasks)
    ]
    return [with_durations(_case_fact(snapshot, case_prev, new, tasks)), *tasks]


# A fact's durations, each the integer microseconds between two of its instants (None
# when either is unknown). What a KPI derives from instants it reads from here: first
# touch (an escalation's acknowledgement), handle time (claim -> complete), and the
# opening -> completion cycle (a dispute's cycle time, an escalation's resolution).
SPANS: dict[str, tuple[str, str]] = {
    "first_touch_us": ("opened_at", "first_touch_at"),
    "handle_us": ("claimed_at", "completed_at"),
    "cycle_us": ("opened_at", "completed_at"),
}
# ... and the work time: the handle time less the pauses, never below zero.
DURATIONS = (*SPANS, "work_us")
# The columns the durations are computed from (what a backfill reads).
DURATION_SOURCES = (*sorted({i for pair in SPANS.values() for i in pair}), "paused_seconds")
_MICROSECOND = timedelta(microseconds=1)


def micros(start: datetime | None, end: datetime | None) -> int | None:
    """Exact integer microseconds from `start` to `end`: `timedelta.total_seconds()` of the
    same pair is this over 10**6, so a KPI's seconds do not depend on where it is computed."""
    if start is None or end is None:
        return None
    return (end - start) // _MICROSECOND


def durations(fact: Mapping[str, Any]) -> dict[str, int | None]:
    """The duration columns of a fact, from its instants and pauses."""
    found = {name: micros(fact.get(a), fact.get(b)) for name, (a, b) in SPANS.items()}
    handle = found["handle_us"]
    # Pauses are sums of whole microseconds kept as float seconds: rounding recovers them.
    paused = round(float(fact.get("paused_seconds") or 0.0) * 1_000_000)
    return {**found, "work_us": None if handle is None else max(handle - paused, 0)}


def with_durations(fact: Fact) -> Fact:
    return {**fact, **durations(fact)}


def _unseen(snapshot: CaseSnapshot, seen: int) -> list[HistoryEntry]:
    """The history entries at absolute index `seen` and after, that this snapshot carries."""
    start = max(seen - snapshot.history_offset, 0)
    return snapshot.history[start:]


def _base(snapshot: CaseSnapshot) -> Fact:
    return {
        "case_id": snapshot.id,
        "case_type": snapshot.type,
        "vendor": snapshot.vendor,
        "region": snapshot.region,
        "sop_name": snapshot.sop.name,
        "sop_version": snapshot.sop.version,
        "reason_code": snapshot.reason_code,
        "currency": snapshot.currency,
        "amount": str(snapshot.amount),
    }


def _task_fact(
    snapshot: CaseSnapshot, task: Task, prev: Fact, new: list[HistoryEntry], index: int
) -> Fact:
    mine = [e for e in new if e.task_id == task.id]
    claims = [e.at for e in mine if e.event == "task_claimed"]
    claims += [task.claimed_at] if task.claimed_at else []
    breaches = [e.at for e in mine if e.event == "sla_breached"]
    breached_at = prev.get("breached_at") or min(breaches, default=None)
    paused, paused_business = _paused(task.sla, snapshot.region)
    looped = any(t.step == task.step for t in snapshot.tasks[:index])
    return {
        **_base(snapshot),
        "id": fact_id(TASK, task.id),
        "kind": TASK,
        "subject_id": task.id,
        "queue": task.queue,
        "step": task.step,
        "assignee": task.assignee,
        "status": task.status.value,
        "outcome": task.outcome,
        "opened_at": task.created_at,
        "first_touch_at": _earliest(prev.get("first_touch_at"), *claims),
        "claimed_at": task.claimed_at,
        "completed_at": task.completed_at,
        "sla_due": task.sla_due,
        "sla_warning_at": task.sla_warning_at,
        "sla_breached": breached_at is not None or task.sla_state == SlaState.BREACHED,
        "breached_at": breached_at,
        "paused_seconds": paused,
        "paused_business_seconds": paused_business,
        "reassignments": int(prev.get("reassignments", 0))
        + sum(e.event == "task_reassigned" for e in mine),
        "loop_backs": int(looped),
        "reopens": 0,
        "billing_refusals": 0,
        "escalations": sum(e.task_id == task.id for e in snapshot.escalations),
        "level": 0,
        "escalation_kind": None,
        "amount_credited": "0",
        "events_seen": 0,
    }


def _case_fact(
    snapshot: CaseSnapshot, prev: Fact, new: list[HistoryEntry], tasks: list[Fact]
) -> Fact:
    def counted(name: str, event: str) -> int:
        return int(prev.get(name, 0)) + sum(e.event == event for e in new)

    return {
        **_base(snapshot),
        "id": fact_id(CASE, snapshot.id),
        "kind": CASE,
        "subject_id": snapshot.id,
        "queue": None,
        "step": snapshot.current_step,
        "assignee": None,
        "status": snapshot.status.value,
        "outcome": snapshot.resolution,
        "opened_at": snapshot.opened_at,
        "first_touch_at": _earliest(*(t["first_touch_at"] for t in tasks)),
        "claimed_at": None,
        "completed_at": snapshot.closed_at,
        "sla_due": None,
        "sla_warning_at": None,
        "sla_breached": any(t["sla_breached"] for t in tasks),
        "breached_at": _earliest(*(t["breached_at"] for t in tasks)),
        "paused_seconds": sum(t["paused_seconds"] for t in tasks),
        "paused_business_seconds": sum(t["paused_business_seconds"] for t in tasks),
        "reassignments": sum(t["reassignments"] for t in tasks),
        "loop_backs": sum(t["loop_backs"] for t in tasks),
        "reopens": counted("reopens", "case_reopened"),
        "billing_refusals": counted("billing_refusals", BILLING_REFUSED),
        "escalations": len(snapshot.escalations),
        "level": 0,
        "escalation_kind": None,
        "amount_credited": _credited(snapshot.data),
        "events_seen": snapshot.history_offset + len(snapshot.history),
    }


def escalation_fact(esc: EscalationSnapshot, case: Mapping[str, Any] | None) -> Fact:
    """An escalation's fact; `case` (its case's row, when projected) gives the SOP and money."""
    return with_durations(_escalation_fact(esc, case or {}))


def _escalation_fact(esc: EscalationSnapshot, case: Mapping[str, Any]) -> Fact:
    touched = [e.at for e in esc.history if e.event in _LEAD_TOUCHES or _resolves(e)]
    ended = next((e.event for e in reversed(esc.history) if _resolves(e)), None)
    return {
        "id": fact_id(ESCALATION, esc.id),
        "kind": ESCALATION,
        "subject_id": esc.id,
        "case_id": esc.case_id,
        "case_type": esc.case_type,
        "vendor": esc.vendor,
        "region": esc.region,
        "queue": esc.queue,
        "step": esc.step,
        "sop_name": case.get("sop_name", ""),
        "sop_version": case.get("sop_version", 0),
        "assignee": esc.owner,
        "reason_code": case.get("reason_code"),
        "status": esc.status.value,
        "outcome": ended.removeprefix("escalation_") if ended else None,
        "opened_at": esc.opened_at,
        "first_touch_at": _earliest(*touched),
        "claimed_at": None,
        "completed_at": esc.resolved_at,
        "sla_due": esc.due_at,
        "sla_warning_at": None,
        "sla_breached": esc.level_breached or esc.level > 0,
        "breached_at": None,
        "paused_seconds": 0.0,
        "paused_business_seconds": 0.0,
        "reassignments": sum(e.event == "escalation_reassign" for e in esc.history),
        "loop_backs": 0,
        "reopens": 0,
        "billing_refusals": 0,
        "escalations": 1,
        "level": esc.level,
        "escalation_kind": esc.kind.value,
        "currency": case.get("currency", ""),
        "amount": case.get("amount", "0"),
        "amount_credited": "0",
        "events_seen": len(esc.history),
    }


def _resolves(entry: HistoryEntry) -> bool:
    return entry.event in ("escalation_resolve", "escalation_approve", "escalation_reject")


def _earliest(*instants: datetime | None) -> datetime | None:
    known = [as_utc(i) for i in instants if i is not None]
    return min(known, default=None)


def _paused(clock: SlaClock | None, region: str) -> tuple[float, float]:
    """Wall and business seconds the clock stood still (pauses that ended).

    Business seconds are counted on the region's shipped calendar; a region without one
    (none today: intake checks it) counts wall time.
    """
    if clock is None:
        return 0.0, 0.0
    ended = [(p.paused_at, p.resumed_at) for p in clock.pauses if p.resumed_at is not None]
    wall = sum((b - a).total_seconds() for a, b in ended)
    try:
        calendar = get_calendar(region)
    except UnknownCalendarError:
        return wall, wall
    business = sum(calendar.business_time_between(a, b).total_seconds() for a, b in ended)
    return wall, business


def _credited(data: Mapping[str, Any]) -> str:
    """The credit memo billing issued for the case (`store_as: credit_memo` in the SOPs)."""
    memo = data.get("credit_memo")
    amount = memo.get("amount") if isinstance(memo, Mapping) else None
    try:
        return str(Decimal(str(amount))) if amount is not None else "0"
    except InvalidOperation:
        return "0"


def by_id(rows: Iterable[Mapping[str, Any]]) -> dict[str, Fact]:
    return {row["id"]: dict(row) for row in rows}
