"""The KPIs as they were defined before they moved into SQL: pure functions over whole
fact rows, one row at a time. tests/test_kpis_sql.py checks that reports/kpis.py gives
the same numbers on SQLite and PostgreSQL; this file is that definition, kept as the
test's reference, not used by the product.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from escalations.calendars import as_utc
from reports.kpis import (
    AGING_BUCKETS,
    DIMENSIONS,
    GROUPS,
    UNDER_THRESHOLD,
    Report,
    ReportError,
    ReportFilter,
    business_days,
    load_facts,
)
from reports.periods import KINDS, period, zone
from store.facts import CASE, ESCALATION, TASK

Fact = Mapping[str, Any]
Row = dict[str, Any]


def in_period(instant: datetime | None, f: ReportFilter) -> bool:
    return instant is not None and f.start <= as_utc(instant) < f.end


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return (as_utc(b) - as_utc(a)).total_seconds()


def _stats(values: Iterable[float | None], prefix: str) -> Row:
    known = sorted(v for v in values if v is not None)
    if not known:
        return {f"{prefix}_avg_s": None, f"{prefix}_median_s": None, f"{prefix}_p90_s": None}
    p90 = known[min(len(known) - 1, int(0.9 * len(known)))]
    return {
        f"{prefix}_avg_s": round(statistics.fmean(known), 1),
        f"{prefix}_median_s": round(statistics.median(known), 1),
        f"{prefix}_p90_s": round(p90, 1),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# --- the KPIs: facts of one group -> its measures ------------------------------------


def sla_attainment(facts: list[Fact], f: ReportFilter) -> Row:
    """Steps done within their SLA ÷ steps that fell due (done, or breached) in the period."""
    due = [
        x
        for x in facts
        if x["sla_due"] is not None
        and (
            in_period(x["completed_at"], f)
            or (x["completed_at"] is None and in_period(x["breached_at"], f))
        )
    ]
    breached = sum(bool(x["sla_breached"]) for x in due)
    met = len(due) - breached
    return {
        "fell_due": len(due),
        "met": met,
        "breached": breached,
        "attainment": _rate(met, len(due)),
    }


def first_touch(facts: list[Fact], f: ReportFilter) -> Row:
    """Time from a task's opening to its first claim, for tasks opened in the period."""
    opened = [x for x in facts if in_period(x["opened_at"], f)]
    touched = [_seconds(x["opened_at"], x["first_touch_at"]) for x in opened]
    return {
        "opened": len(opened),
        "touched": sum(t is not None for t in touched),
        **_stats(touched, "first_touch"),
    }


def handle_time(facts: list[Fact], f: ReportFilter) -> Row:
    """AHT (claim -> complete, wall time) and work time (the same less its pauses)."""
    done = [x for x in facts if in_period(x["completed_at"], f) and x["claimed_at"] is not None]
    handle = [_seconds(x["claimed_at"], x["completed_at"]) for x in done]
    work = [
        max(h - x["paused_seconds"], 0.0)
        for h, x in zip(handle, done, strict=True)
        if h is not None
    ]
    return {"completed": len(done), **_stats(handle, "aht"), **_stats(work, "work")}


def backlog(facts: list[Fact], f: ReportFilter) -> Row:
    """Tasks open at the report's instant, by age in business days on their region's calendar."""
    at = f.as_of or f.end
    live = [x for x in facts if x["status"] != "done" and as_utc(x["opened_at"]) < at]
    counts = dict.fromkeys((name for name, _, _ in AGING_BUCKETS), 0)
    ages = []
    for x in live:
        age = business_days(x["region"], x["opened_at"], at)
        ages.append(age)
        counts[next(n for n, lo, hi in AGING_BUCKETS if lo <= age < hi)] += 1
    past_sla = sum(x["sla_due"] is not None and as_utc(x["sla_due"]) <= at for x in live)
    return {
        "backlog": len(live),
        **counts,
        "past_sla": past_sla,
        "oldest_business_days": round(max(ages), 2) if ages else None,
    }


def escalations(facts: list[Fact], f: ReportFilter) -> Row:
    """Escalations opened in the period: how many, of which kinds, time to ack and resolve."""
    opened = [x for x in facts if in_period(x["opened_at"], f)]
    kinds: dict[str, int] = defaultdict(int)
    for x in opened:
        kinds[x["escalation_kind"] or "?"] += 1
    return {
        "escalations": len(opened),
        "sla_breach": kinds["sla_breach"],
        "manual": kinds["manual"],
        "approval": kinds["approval"],
        "resolved": sum(x["completed_at"] is not None for x in opened),
        "raised_to_manager": sum(x["level"] > 0 for x in opened),
        **_stats((_seconds(x["opened_at"], x["first_touch_at"]) for x in opened), "ack"),
        **_stats((_seconds(x["opened_at"], x["completed_at"]) for x in opened), "resolve"),
    }


def case_quality(facts: list[Fact], f: ReportFilter) -> Row:
    """Escalation and reopen rates of cases opened in the period; first-time-right of those
    closed in it (no loop back to a step, no reopening, no refused billing call)."""
    opened = [x for x in facts if in_period(x["opened_at"], f)]
    closed = [x for x in facts if in_period(x["completed_at"], f)]
    right = [x for x in closed if not (x["loop_backs"] or x["reopens"] or x["billing_refusals"])]
    return {
        "opened": len(opened),
        "escalated": sum(x["escalations"] > 0 for x in opened),
        "escalation_rate": _rate(sum(x["escalations"] > 0 for x in opened), len(opened)),
        "reopened": sum((x["reopens"] + x["loop_backs"]) > 0 for x in opened),
        "reopen_rate": _rate(
            sum((x["reopens"] + x["loop_backs"]) > 0 for x in opened), len(opened)
        ),
        "closed": len(closed),
        "first_time_right": len(right),
        "first_time_right_rate": _rate(len(right), len(closed)),
    }


def reassignments(facts: list[Fact], f: ReportFilter) -> Row:
    """Tasks opened in the period that were reassigned at least once."""
    opened = [x for x in facts if in_period(x["opened_at"], f)]
    moved = sum(x["reassignments"] > 0 for x in opened)
    return {
        "tasks": len(opened),
        "reassigned": moved,
        "reassignments": sum(x["reassignments"] for x in opened),
        "reassignment_rate": _rate(moved, len(opened)),
        "loop_backs": sum(x["loop_backs"] for x in opened),
    }


def throughput(facts: list[Fact], f: ReportFilter) -> list[Row]:
    """Tasks each agent completed per queue, and a flag when under the queue's median."""
    done: dict[tuple[str, str], int] = defaultdict(int)
    for x in facts:
        if in_period(x["completed_at"], f) and x["assignee"]:
            done[(x["queue"], x["assignee"])] += 1
    by_queue: dict[str, list[int]] = defaultdict(list)
    for (queue, _), count in done.items():
        by_queue[queue].append(count)
    rows = []
    for (queue, agent), count in sorted(done.items()):
        median = statistics.median(by_queue[queue])
        rows.append(
            {
                "queue": queue,
                "agent": agent,
                "completed": count,
                "queue_median": median,
                "under_threshold": count < UNDER_THRESHOLD * median,
            }
        )
    return rows


def disputes(facts: list[Fact], f: ReportFilter) -> list[Row]:
    """Disputes closed in the period by reason code and currency: cycle time, disputed and
    credited amounts, the share found valid (credited)."""
    groups: dict[tuple[str, str], list[Fact]] = defaultdict(list)
    for x in facts:
        if x["case_type"] == "dispute" and in_period(x["completed_at"], f):
            groups[(x["reason_code"] or "", x["currency"])].append(x)
    rows = []
    for (reason, currency), cases in sorted(groups.items()):
        cycle = [_seconds(x["opened_at"], x["completed_at"]) for x in cases]
        credited = sum((Decimal(x["amount_credited"]) for x in cases), Decimal(0))
        rows.append(
            {
                "reason_code": reason,
                "currency": currency,
                "closed": len(cases),
                "credited_cases": sum(Decimal(x["amount_credited"]) > 0 for x in cases),
                "disputed_amount": str(sum((Decimal(x["amount"]) for x in cases), Decimal(0))),
                "credited_amount": str(credited),
                "cycle_median_s": round(statistics.median(c for c in cycle if c is not None), 1),
            }
        )
    return rows


def collections(facts: list[Fact], f: ReportFilter) -> list[Row]:
    """Collection cases closed in the period, by resolution and currency; `paid` ones are
    the amount collected."""
    groups: dict[tuple[str, str], list[Fact]] = defaultdict(list)
    for x in facts:
        if x["case_type"] == "collection" and in_period(x["completed_at"], f):
            groups[(x["outcome"] or "", x["currency"])].append(x)
    return [
        {
            "resolution": resolution,
            "currency": currency,
            "cases": len(cases),
            "amount": str(sum((Decimal(x["amount"]) for x in cases), Decimal(0))),
        }
        for (resolution, currency), cases in sorted(groups.items())
    ]


Measure = Callable[[list[Fact], ReportFilter], Row]
Table = Callable[[list[Fact], ReportFilter], list[Row]]


@dataclass(frozen=True)
class Kpi:
    kind: str  # the facts it counts
    window: tuple[str, ...]  # the instants that place a fact in a period (load_facts)
    measure: Measure | None = None  # one row per group
    table: Table | None = None  # its own rows (already grouped)
    help: str = ""


_OPENED, _DONE = ("opened_at",), ("completed_at",)
KPIS: dict[str, Kpi] = {
    "sla": Kpi(TASK, ("completed_at", "breached_at"), sla_attainment, help="SLA attainment"),
    "first-touch": Kpi(TASK, _OPENED, first_touch, help="time to first touch"),
    "handle-time": Kpi(TASK, _DONE, handle_time, help="AHT and work time excluding pauses"),
    "backlog": Kpi(TASK, ("open",), backlog, help="backlog and aging in business days"),
    "reassignments": Kpi(TASK, _OPENED, reassignments, help="reassignment rate"),
    "escalations": Kpi(ESCALATION, _OPENED, escalations, help="escalations, ack and resolve"),
    "quality": Kpi(
        CASE, (*_OPENED, *_DONE), case_quality, help="escalation, reopen, first-time-right"
    ),
    "throughput": Kpi(TASK, _DONE, table=throughput, help="per agent, flag under median"),
    "disputes": Kpi(CASE, _DONE, table=disputes, help="cycle time, credited vs disputed"),
    "collections": Kpi(CASE, _DONE, table=collections, help="amount collected"),
}


def compute(name: str, facts: list[Fact], f: ReportFilter) -> Report:
    """The report `name` over `facts` (already loaded with `f`)."""
    kpi = KPIS.get(name)
    if kpi is None:
        raise ReportError(f"report: unknown report {name!r}; known: {', '.join(KPIS)}")
    if kpi.table is not None:
        rows = kpi.table(facts, f)
        return Report(name, list(rows[0]) if rows else [], rows)
    assert kpi.measure is not None
    if f.group_by is None:
        row = {"period_start": f.start.isoformat(), **kpi.measure(facts, f)}
        return Report(name, list(row), [row])
    rows = [
        {f.group_by: key, **kpi.measure(members, sub)} for key, members, sub in _groups(facts, f)
    ]
    return Report(name, list(rows[0]) if rows else [f.group_by], rows)


def _groups(facts: list[Fact], f: ReportFilter) -> list[tuple[Any, list[Fact], ReportFilter]]:
    """Facts split by the filter's `group_by`: a dimension, or a calendar bucket (each
    bucket gets its own period, so a month's row counts what happened in that month)."""
    group = f.group_by
    if group in DIMENSIONS:
        column = DIMENSIONS[group]
        split: dict[Any, list[Fact]] = defaultdict(list)
        for x in facts:
            split[x[column]].append(x)
        return [(k, v, f) for k, v in sorted(split.items(), key=lambda kv: str(kv[0]))]
    if group in KINDS:
        buckets, day = [], f.start.astimezone(zone(f.timezone)).date()
        while True:
            p = period(group, day, f.timezone)
            if p.start >= f.end:
                break
            sub = replace(f, start=max(p.start, f.start), end=min(p.end, f.end), as_of=None)
            buckets.append((p.label, facts, sub))
            day = p.next_first_day
        return buckets
    raise ReportError(f"group_by: {group!r} is not one of {', '.join(GROUPS)}")


def reference(engine: Engine, name: str, f: ReportFilter) -> Report:
    """The report as it was computed: every fact its window admits, loaded whole."""
    kpi = KPIS[name]
    return compute(name, load_facts(engine, kpi.kind, f, kpi.window), f)
