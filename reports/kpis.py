"""The KPIs a service delivery lead runs the vendors on, computed over the facts table.

Each KPI is SQL (SQLAlchemy Core, the same on SQLite and PostgreSQL): counts and sums by
group in one GROUP BY, so a report over 100,000 facts never loads them into Python. What
SQL cannot do cheaply on both databases stays in Python, over slim data: medians and p90
(over the durations the projection stored as integer microseconds, store/facts.py; a
group's values come as one JSON array in the same pass as its counts, `Ask.measure`),
exact money sums (amounts are text) and the business-day aging of the backlog (the
calendar turns each aging bound into an instant, then SQL counts the tasks opened before
it). A report is a table: one row per group (`group_by` a dimension or a calendar
bucket), each with the group's measures.

Which facts a KPI counts in a period, by the instant that places them there:
SLA attainment, handle time, throughput: tasks completed in it (a breached task that is
still open counts as breached when it breached in it); first touch, reassignments:
tasks opened in it; backlog: tasks open at the period's end (today's state for the
current period); escalations: those opened in it; first-time-right and dispute cycle
time: cases closed in it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Engine,
    and_,
    case,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import True_
from sqlalchemy.sql.functions import FunctionElement

from escalations.calendars import UnknownCalendarError, as_utc, get_calendar
from reports.periods import KINDS, period, zone
from store.facts import CASE, ESCALATION, TASK
from store.tables import FactRow

Fact = Mapping[str, Any]
Row = dict[str, Any]
Key = Any  # a group's value: a dimension's value, a bucket's label, or None (one group)

# Aging buckets of the backlog, in business days on the region's calendar.
AGING_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("0-1d", 0, 1),
    ("1-3d", 1, 3),
    ("3-7d", 3, 7),
    ("7d+", 7, float("inf")),
)
# An agent whose throughput is under this share of their queue's median is flagged.
UNDER_THRESHOLD = 0.7
DIMENSIONS = {
    "queue": "queue",
    "step": "step",
    "vendor": "vendor",
    "region": "region",
    "case_type": "case_type",
    "sop_version": "sop_version",
    "agent": "assignee",
    "reason_code": "reason_code",
}
GROUPS = (*DIMENSIONS, *KINDS)
# A report's filters and the fact column each one compares.
FILTER_COLUMNS = {
    "vendor": "vendor",
    "queue": "queue",
    "region": "region",
    "case_type": "case_type",
    "sop_name": "sop_name",
    "sop_version": "sop_version",
    "agent": "assignee",
}
_T = FactRow.__table__
_C = _T.c


class ReportError(ValueError):
    """A report name, dimension or filter that does not exist; the message names it."""


@dataclass(frozen=True)
class ReportFilter:
    """Which facts a report counts. None: any. The period is [start, end) in UTC."""

    start: datetime
    end: datetime
    timezone: str = "UTC"
    vendor: str | None = None
    vendors: Sequence[str | None] | None = None  # the caller's reach (None: every vendor)
    queue: str | None = None
    region: str | None = None
    case_type: str | None = None
    sop_name: str | None = None
    sop_version: int | None = None
    agent: str | None = None
    group_by: str | None = None
    as_of: datetime | None = None  # the backlog's instant: min(end, now)

    def filters(self) -> dict[str, object]:
        """The dimension filters, by name (None: any)."""
        return {name: getattr(self, name) for name in FILTER_COLUMNS}


@dataclass
class Report:
    name: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)


# --- SQL building blocks ---------------------------------------------------------------


class ValuesOf(FunctionElement[Any]):
    """A group's values of a column as one JSON array: 100,000 integers cost SQLite and the
    driver one text and one `json.loads`, not 100,000 row tuples (about 3x less CPU).
    For integer columns only: SQLite writes a REAL in JSON with 15 digits, not exactly."""

    type = JSON()
    name = "values_of"
    inherit_cache = True


@compiles(ValuesOf, "sqlite")
def _values_sqlite(element: ValuesOf, compiler: Any, **kw: Any) -> str:
    return f"json_group_array({compiler.process(element.clauses, **kw)})"


@compiles(ValuesOf, "postgresql")
def _values_postgresql(element: ValuesOf, compiler: Any, **kw: Any) -> str:
    return f"json_agg({compiler.process(element.clauses, **kw)})"


class Common(FunctionElement[bool]):
    """A condition most facts meet, so SQLite's planner does not drive the query by an
    index on it: `kind` only splits the facts into tasks, cases and escalations, and an
    index scan on it reads every task again through the table (about 5x the CPU of reading
    the table once, seen at 100,000 facts). With a vendor the (kind, vendor, instant)
    indexes still serve. PostgreSQL has statistics and gets the plain condition."""

    type = Boolean()
    name = "common"
    inherit_cache = True
    _is_implicitly_boolean = True  # a condition as it is: never rendered `... = 1`


@compiles(Common, "sqlite")
def _common_sqlite(element: Common, compiler: Any, **kw: Any) -> str:
    return f"likelihood({compiler.process(next(iter(element.clauses)), **kw)}, 0.9)"


@compiles(Common)
def _common_default(element: Common, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(next(iter(element.clauses)), **kw))


def _only(value: ColumnElement[Any], *conditions: ColumnElement[bool]) -> ColumnElement[Any]:
    """`value` where the conditions hold, else NULL (no CASE when they always hold)."""
    tested = [c for c in conditions if not isinstance(c, True_)]
    return case((and_(*tested), value)) if tested else value


def _within(instant: ColumnElement[Any], start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(instant >= start, instant < end)


# A measure SQL sums over a group: the facts that meet the condition, each adding the value.
Summed = tuple[ColumnElement[bool], ColumnElement[Any]]


def _count(condition: ColumnElement[bool]) -> Summed:
    return condition, literal(1)


def _total(column: ColumnElement[Any]) -> Summed:
    return true(), column


def _sum(inside: ColumnElement[bool], summed: Summed) -> ColumnElement[Any]:
    condition, value = summed
    return func.coalesce(func.sum(case((and_(inside, condition), value), else_=0)), 0)


def _scope(kind: str, f: ReportFilter) -> list[ColumnElement[bool]]:
    """The facts of `kind` the filter admits and that began before the period's end."""
    # Escalations are few: an index on their kind pays.
    is_kind = _C.kind == kind
    where = [is_kind if kind == ESCALATION else Common(is_kind), _C.opened_at < f.end]
    for name, value in f.filters().items():
        column = FILTER_COLUMNS[name]
        if value is not None and not (kind == CASE and column in ("queue", "assignee")):
            where.append(_C[column] == value)
    if f.vendors is not None:
        named = [v for v in f.vendors if v is not None]
        clause = _C.vendor.in_(named)
        where.append(clause | _C.vendor.is_(None) if None in f.vendors else clause)
    return where


def _window(window: Sequence[str], f: ReportFilter) -> ColumnElement[bool]:
    """Facts with one of these instants in the period (`open`: the facts not done)."""
    return or_(
        *(_C.status != "done" if c == "open" else _C[c].between(f.start, f.end) for c in window)
    )


def load_facts(
    engine: Engine, kind: str, f: ReportFilter, window: Sequence[str] = ()
) -> list[Fact]:
    """The fact rows of `kind` the filter admits and that began before the period's end;
    with a `window`, only those with one of these instants in the period. For listings of
    a few facts (the QBR's escalations); the KPIs below never load rows."""
    query = select(_T).where(*_scope(kind, f))
    if window:
        query = query.where(_window(window, f))
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


@dataclass(frozen=True)
class Ask:
    """One report's question to the database: which facts, split how.

    With a dimension, the groups are those of the facts the KPI's `window` admits (a group
    can show zeros); with a calendar bucket, every bucket of the period, each counting what
    its own instants place in it; without `group_by`, one group (key None).
    """

    engine: Engine
    kind: str
    window: tuple[str, ...]
    f: ReportFilter
    buckets: tuple[tuple[str, ReportFilter], ...] = ()

    @property
    def dimension(self) -> str | None:
        return DIMENSIONS.get(self.f.group_by or "")

    def keys(self, *found: Iterable[Key]) -> list[Key]:
        if self.buckets:
            return [label for label, _ in self.buckets]
        if self.dimension is None:
            return [None]
        return sorted({k for keys in found for k in keys}, key=str)

    def key_of(self, instant: ColumnElement[Any]) -> ColumnElement[Any] | None:
        if self.buckets:
            return _bucket(instant, self.buckets)
        return _C[self.dimension] if self.dimension else None

    def _where(self, instant: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        # A dimension's groups come from the KPI's window; otherwise only the period counts.
        inside = _window(self.window, self.f) if self.dimension else self._inside(instant)
        return [*_scope(self.kind, self.f), inside]

    def _inside(self, instant: ColumnElement[Any]) -> ColumnElement[bool]:
        return _within(instant, self.f.start, self.f.end)

    def totals(self, instant: ColumnElement[Any], **sums: Summed) -> dict[Key, dict[str, int]]:
        """Per group, each named count or sum over the facts whose `instant` falls in the
        period (a group without any: zeros)."""
        return self.measure(instant, sums)[0]

    def measure(
        self,
        instant: ColumnElement[Any],
        sums: Mapping[str, Summed],
        arrays: Mapping[str, Summed] | None = None,
    ) -> tuple[dict[Key, dict[str, int]], dict[Key, dict[str, list[int]]]]:
        """`totals`, and in the same pass over the facts, per group each named array of
        the integer values of the facts whose `instant` falls in the period and that meet
        its condition (unknown values left out), fetched as one array, not a row per fact."""
        arrays = arrays or {}
        key = self.key_of(instant)
        # Only a dimension's groups take facts from outside the period (`_where`): without
        # one every fact is inside, and not testing it again per fact and measure pays.
        inside = self._inside(instant) if self.dimension else true()
        columns = [
            *(_sum(inside, summed) for summed in sums.values()),
            *(ValuesOf(_only(value, inside, c)) for c, value in arrays.values()),
        ]
        query = select(key if key is not None else literal(None), *columns).where(
            *self._where(instant)
        )
        if key is not None:
            query = query.group_by(key)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        found: dict[Key, dict[str, int]] = defaultdict(lambda: dict.fromkeys(sums, 0))
        listed: dict[Key, dict[str, list[int]]] = defaultdict(lambda: {n: [] for n in arrays})
        for group, *measured in rows:
            found[group] = {n: int(v) for n, v in zip(sums, measured, strict=False)}
            got = measured[len(sums) :]
            listed[group] = {
                n: [v for v in a or () if v is not None] for n, a in zip(arrays, got, strict=True)
            }
        return found, listed


def _bucket(
    instant: ColumnElement[Any], buckets: Sequence[tuple[str, ReportFilter]]
) -> ColumnElement[Any]:
    """The label of the bucket holding `instant` (a balanced tree of CASEs: a quarter's
    92 days cost seven comparisons a fact, not 92)."""
    if len(buckets) == 1:
        return literal(buckets[0][0])
    middle = len(buckets) // 2
    return case(
        (instant < buckets[middle][1].start, _bucket(instant, buckets[:middle])),
        else_=_bucket(instant, buckets[middle:]),
    )


# --- pure helpers ----------------------------------------------------------------------


def _seconds(us: int | None) -> float | None:
    # As `timedelta.total_seconds()`: microseconds over 10**6, correctly rounded.
    return None if us is None else us / 1_000_000


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


def _stats_us(us: list[int], prefix: str) -> Row:
    """`_stats` of durations in integer microseconds: the integers sorted (cheap on runs
    already sorted) then divided, as `_seconds` does, in one list comprehension."""
    return _stats([u / 1_000_000 for u in sorted(us)], prefix)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def business_days(region: str, start: datetime, end: datetime) -> float:
    """Working days between two instants on the region's calendar (calendar days if none)."""
    try:
        calendar = get_calendar(region)
    except UnknownCalendarError:
        return (as_utc(end) - as_utc(start)) / timedelta(days=1)
    return calendar.business_time_between(start, end) / calendar.working_day


def aged_since(region: str, at: datetime, days: float) -> datetime:
    """The latest opening instant whose age at `at` is `days` business days or more: a task
    is at least that old exactly when it opened at or before this instant."""
    try:
        calendar = get_calendar(region)
    except UnknownCalendarError:
        return as_utc(at) - timedelta(days=days)
    return calendar.business_start(at, calendar.working_day * days)


# --- the KPIs: one ask -> each group's measures ----------------------------------------


def sla_attainment(ask: Ask) -> dict[Key, Row]:
    """Steps done within their SLA ÷ steps that fell due (done, or breached) in the period."""
    due = _C.sla_due.is_not(None)
    totals = ask.totals(
        func.coalesce(_C.completed_at, _C.breached_at),
        fell_due=_count(due),
        breached=_count(and_(due, _C.sla_breached)),
    )
    out = {}
    for key in ask.keys(totals):
        n = totals[key]
        met = n["fell_due"] - n["breached"]
        out[key] = {
            "fell_due": n["fell_due"],
            "met": met,
            "breached": n["breached"],
            "attainment": _rate(met, n["fell_due"]),
        }
    return out


def first_touch(ask: Ask) -> dict[Key, Row]:
    """Time from a task's opening to its first claim, for tasks opened in the period."""
    touched = _C.first_touch_at.is_not(None)
    totals, waits = ask.measure(
        _C.opened_at,
        {"opened": _count(true()), "touched": _count(touched)},
        {"waits": (true(), _C.first_touch_us)},  # NULL when not touched
    )
    return {
        key: {**totals[key], **_stats_us(waits[key]["waits"], "first_touch")}
        for key in ask.keys(totals)
    }


def handle_time(ask: Ask) -> dict[Key, Row]:
    """AHT (claim -> complete, wall time) and work time (the same less its pauses)."""
    claimed = _C.claimed_at.is_not(None)
    totals, times = ask.measure(
        _C.completed_at,
        {"completed": _count(claimed)},
        # NULL when the task was not claimed
        {"handle": (true(), _C.handle_us), "work": (true(), _C.work_us)},
    )
    return {
        key: {
            "completed": totals[key]["completed"],
            **_stats_us(times[key]["handle"], "aht"),
            **_stats_us(times[key]["work"], "work"),
        }
        for key in ask.keys(totals)
    }


def backlog(ask: Ask) -> dict[Key, Row]:
    """Tasks open at the report's instant, by age in business days on their region's calendar."""
    if ask.buckets:  # each bucket's backlog is the one at its end
        return {
            label: _backlog_at(replace(ask, f=sub, buckets=()), sub.end)[None]
            for label, sub in ask.buckets
        }
    return _backlog_at(ask, ask.f.as_of or ask.f.end)


def _backlog_at(ask: Ask, at: datetime) -> dict[Key, Row]:
    live = and_(_C.status != "done", _C.opened_at < at)
    where = [*_scope(TASK, ask.f), _C.status != "done"]
    key = ask.key_of(_C.opened_at)
    with ask.engine.connect() as connection:
        regions = connection.execute(select(_C.region).where(*where, live).distinct()).scalars()
        edges = [(r, [aged_since(r, at, lo) for _, lo, _ in AGING_BUCKETS[1:]]) for r in regions]
        # A task is at least `lo` business days old when it opened at or before its
        # region's bound: one count per aging bound, no age computed per task.
        older = [
            _count(or_(false(), *(and_(_C.region == r, _C.opened_at <= b[i]) for r, b in edges)))
            for i in range(len(AGING_BUCKETS) - 1)
        ]
        past_sla = _count(and_(_C.sla_due.is_not(None), _C.sla_due <= at))
        counts = [_sum(live, summed) for summed in (_count(true()), *older, past_sla)]
        columns = [*counts, func.min(case((live, _C.opened_at)))]
        group = [key] if key is not None else []
        query = select(*group, _C.region, *columns).where(*where).group_by(*group, _C.region)
        rows = connection.execute(query).all()
    split: dict[Key, list[Any]] = defaultdict(list)
    for row in rows:
        split[row[0] if key is not None else None].append(row[len(group) :])
    return {k: _aging(split.get(k, []), at) for k in ask.keys(split)}


def _aging(regions: list[Any], at: datetime) -> Row:
    """A group's backlog from its per-region counts."""
    live = sum(int(r[1]) for r in regions)
    older = [sum(int(r[2 + i]) for r in regions) for i in range(len(AGING_BUCKETS) - 1)]
    at_least = [live, *older, 0]  # tasks at least each bucket's lower bound old
    counts = {name: at_least[i] - at_least[i + 1] for i, (name, _, _) in enumerate(AGING_BUCKETS)}
    ages = [business_days(r[0], r[-1], at) for r in regions if r[-1] is not None]
    return {
        "backlog": live,
        **counts,
        "past_sla": sum(int(r[-2]) for r in regions),
        "oldest_business_days": round(max(ages), 2) if ages else None,
    }


def escalations(ask: Ask) -> dict[Key, Row]:
    """Escalations opened in the period: how many, of which kinds, time to ack and resolve."""
    kind = _C.escalation_kind
    totals, times = ask.measure(
        _C.opened_at,
        {
            "escalations": _count(true()),
            "sla_breach": _count(kind == "sla_breach"),
            "manual": _count(kind == "manual"),
            "approval": _count(kind == "approval"),
            "resolved": _count(_C.completed_at.is_not(None)),
            "raised_to_manager": _count(_C.level > 0),
        },
        {"ack": (true(), _C.first_touch_us), "resolve": (true(), _C.cycle_us)},
    )
    return {
        key: {
            **totals[key],
            **_stats_us(times[key]["ack"], "ack"),
            **_stats_us(times[key]["resolve"], "resolve"),
        }
        for key in ask.keys(totals)
    }


def case_quality(ask: Ask) -> dict[Key, Row]:
    """Escalation and reopen rates of cases opened in the period; first-time-right of those
    closed in it (no loop back to a step, no reopening, no refused billing call)."""
    opened = ask.totals(
        _C.opened_at,
        opened=_count(true()),
        escalated=_count(_C.escalations > 0),
        reopened=_count(_C.reopens + _C.loop_backs > 0),
    )
    right = and_(_C.loop_backs == 0, _C.reopens == 0, _C.billing_refusals == 0)
    closed = ask.totals(_C.completed_at, closed=_count(true()), first_time_right=_count(right))
    out = {}
    for key in ask.keys(opened, closed):
        o, c = opened[key], closed[key]
        out[key] = {
            "opened": o["opened"],
            "escalated": o["escalated"],
            "escalation_rate": _rate(o["escalated"], o["opened"]),
            "reopened": o["reopened"],
            "reopen_rate": _rate(o["reopened"], o["opened"]),
            "closed": c["closed"],
            "first_time_right": c["first_time_right"],
            "first_time_right_rate": _rate(c["first_time_right"], c["closed"]),
        }
    return out


def reassignments(ask: Ask) -> dict[Key, Row]:
    """Tasks opened in the period that were reassigned at least once, and those that went
    back to a step that ran before (`loop_backs`)."""
    totals = ask.totals(
        _C.opened_at,
        tasks=_count(true()),
        reassigned=_count(_C.reassignments > 0),
        reassignments=_total(_C.reassignments),
        loop_backs=_total(_C.loop_backs),
    )
    out = {}
    for key in ask.keys(totals):
        n = totals[key]
        out[key] = {
            "tasks": n["tasks"],
            "reassigned": n["reassigned"],
            "reassignments": n["reassignments"],
            "reassignment_rate": _rate(n["reassigned"], n["tasks"]),
            "loop_backs": n["loop_backs"],
        }
    return out


# --- the KPIs that are tables of their own ---------------------------------------------


def throughput(engine: Engine, f: ReportFilter) -> list[Row]:
    """Tasks each agent completed per queue, and a flag when under the queue's median."""
    query = (
        select(_C.queue, _C.assignee, func.count())
        .where(*_scope(TASK, f), _within(_C.completed_at, f.start, f.end))
        .where(_C.assignee.is_not(None), _C.assignee != "")
        .group_by(_C.queue, _C.assignee)
    )
    with engine.connect() as connection:
        done = {(q, a): int(n) for q, a, n in connection.execute(query)}
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


def _closed_cases(
    engine: Engine, f: ReportFilter, case_type: str, *values: ColumnElement[Any]
) -> list[Any]:
    query = select(*values).where(
        *_scope(CASE, f), _C.case_type == case_type, _within(_C.completed_at, f.start, f.end)
    )
    with engine.connect() as connection:
        return list(connection.execute(query))


def disputes(engine: Engine, f: ReportFilter) -> list[Row]:
    """Disputes closed in the period by reason code and currency: cycle time, disputed and
    credited amounts, the share found valid (credited). Amounts are exact text: summed as
    decimals here, not as SQL floats."""
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for reason, currency, *rest in _closed_cases(
        engine,
        f,
        "dispute",
        _C.reason_code,
        _C.currency,
        _C.amount,
        _C.amount_credited,
        _C.cycle_us,
    ):
        groups[(reason or "", currency)].append(rest)
    rows = []
    for (reason, currency), cases in sorted(groups.items()):
        credited = [Decimal(c) for _, c, _ in cases]
        rows.append(
            {
                "reason_code": reason,
                "currency": currency,
                "closed": len(cases),
                "credited_cases": sum(c > 0 for c in credited),
                "disputed_amount": str(sum((Decimal(a) for a, _, _ in cases), Decimal(0))),
                "credited_amount": str(sum(credited, Decimal(0))),
                "cycle_median_s": round(statistics.median(us / 1_000_000 for *_, us in cases), 1),
            }
        )
    return rows


def collections(engine: Engine, f: ReportFilter) -> list[Row]:
    """Collection cases closed in the period, by resolution and currency; `paid` ones are
    the amount collected."""
    groups: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    for outcome, currency, amount in _closed_cases(
        engine, f, "collection", _C.outcome, _C.currency, _C.amount
    ):
        groups[(outcome or "", currency)].append(Decimal(amount))
    return [
        {
            "resolution": resolution,
            "currency": currency,
            "cases": len(amounts),
            "amount": str(sum(amounts, Decimal(0))),
        }
        for (resolution, currency), amounts in sorted(groups.items())
    ]


Measure = Callable[[Ask], dict[Key, Row]]
Table = Callable[[Engine, ReportFilter], list[Row]]


@dataclass(frozen=True)
class Kpi:
    kind: str  # the facts it counts
    window: tuple[str, ...]  # the instants that place a fact in a period (its groups)
    measure: Measure | None = None  # one row per group
    table: Table | None = None  # its own rows (already grouped)
    help: str = ""


_OPENED, _DONE = ("opened_at",), ("completed_at",)
KPIS: dict[str, Kpi] = {
    "sla": Kpi(TASK, ("completed_at", "breached_at"), sla_attainment, help="SLA attainment"),
    "first-touch": Kpi(TASK, _OPENED, first_touch, help="time to first touch"),
    "handle-time": Kpi(TASK, _DONE, handle_time, help="AHT and work time excluding pauses"),
    "backlog": Kpi(TASK, ("open",), backlog, help="backlog and aging in business days"),
    "reassignments": Kpi(TASK, _OPENED, reassignments, help="reassignment and loop-back rate"),
    "escalations": Kpi(ESCALATION, _OPENED, escalations, help="escalations, ack and resolve"),
    "quality": Kpi(
        CASE, (*_OPENED, *_DONE), case_quality, help="escalation, reopen, first-time-right"
    ),
    "throughput": Kpi(TASK, _DONE, table=throughput, help="per agent, flag under median"),
    "disputes": Kpi(CASE, _DONE, table=disputes, help="cycle time, credited vs disputed"),
    "collections": Kpi(CASE, _DONE, table=collections, help="amount collected"),
}


def run(engine: Engine, name: str, f: ReportFilter) -> Report:
    """The report `name` over the facts `f` admits."""
    kpi = KPIS.get(name)
    if kpi is None:
        raise ReportError(f"report: unknown report {name!r}; known: {', '.join(KPIS)}")
    if f.group_by is not None and f.group_by not in GROUPS:
        raise ReportError(f"group_by: {f.group_by!r} is not one of {', '.join(GROUPS)}")
    if kpi.table is not None:
        rows = kpi.table(engine, f)
        return Report(name, list(rows[0]) if rows else [], rows)
    assert kpi.measure is not None
    buckets = _calendar_buckets(f) if f.group_by in KINDS else ()
    measures = kpi.measure(Ask(engine, kpi.kind, kpi.window, f, buckets))
    if f.group_by is None:
        row = {"period_start": f.start.isoformat(), **measures[None]}
        return Report(name, list(row), [row])
    rows = [{f.group_by: key, **row} for key, row in measures.items()]
    return Report(name, list(rows[0]) if rows else [f.group_by], rows)


def _calendar_buckets(f: ReportFilter) -> tuple[tuple[str, ReportFilter], ...]:
    """The period cut by the filter's calendar `group_by`, each bucket with its own period
    (so a month's row counts what happened in that month)."""
    assert f.group_by is not None
    buckets, day = [], f.start.astimezone(zone(f.timezone)).date()
    while True:
        p = period(f.group_by, day, f.timezone)
        if p.start >= f.end:
            break
        sub = replace(f, start=max(p.start, f.start), end=min(p.end, f.end), as_of=None)
        buckets.append((p.label, sub))
        day = p.next_first_day
    return tuple(buckets)
