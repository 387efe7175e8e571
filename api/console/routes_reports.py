"""The reports page: the governance KPIs as tables and charts, and each one's CSV.

Every number comes from `api.services.reports`, the functions behind `GET /reports/...`,
so the page shows what the JSON API answers, in the same vendor scope, and refuses what
it refuses (an agent's 403, a lead asking for another vendor's 403).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from access.policy import Action, refuse_role
from api.console.pages import PREFIX, ConsoleRoute, render
from api.console.session import allowed
from api.deps import Services, ServicesDep
from api.errors import ApiError
from api.routes.reports import GroupBy, PeriodKind, ReportName
from api.schemas import ShortText
from api.services import reports as service
from api.services import sops as sop_service
from domain.case_models import Actor
from reports import charts
from reports.kpis import AGING_BUCKETS, GROUPS, KPIS, UNDER_THRESHOLD, Report, ReportFilter
from reports.periods import Period

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Actor, Depends(allowed(Action.REPORTS))]

# The page's sections, in the order a delivery lead reads them; a KPI added to
# reports.kpis later still shows, after these, under its own name.
HEADINGS = {
    "sla": "SLA attainment",
    "backlog": "Backlog and aging (business days)",
    "handle-time": "Handle time",
    "first-touch": "Time to first touch",
    "escalations": "Escalations",
    "quality": "Escalation, reopen and first-time-right rates",
    "reassignments": "Reassignments",
    "throughput": "Throughput per agent",
    "disputes": "Disputes: cycle time, disputed and credited",
    "collections": "Collections: amount collected",
}
# What the SLA chart splits a period into (a day has no smaller bucket: by queue).
TREND_BUCKET = {"day": "queue", "week": "day", "month": "week", "quarter": "month"}
# The ledger's currency when the form names none.
LEDGER_CURRENCY = "EUR"


class ReportQuery(BaseModel):
    """The page's GET form, parsed like the JSON route's parameters; an empty field is
    "any" (a browser sends every field of the form)."""

    period: PeriodKind = "week"
    at: Annotated[str | None, Field(max_length=40)] = None
    tz: Annotated[str | None, Field(max_length=64)] = None
    vendor: ShortText | None = None
    queue: ShortText | None = None
    case_type: ShortText | None = None
    group_by: GroupBy | None = None
    currency: Annotated[str | None, Field(pattern="^[A-Z]{3}$")] = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_any(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def timezone(self) -> str:
        return self.tz or "UTC"

    def filter(self, now: datetime) -> ReportFilter:
        """The report filter, as the JSON route builds it (422 naming a bad `at` or `tz`)."""
        return service.report_filter(
            kind=self.period,
            at=self.at,
            tz=self.timezone,
            now=now,
            vendor=self.vendor,
            queue=self.queue,
            case_type=self.case_type,
            group_by=self.group_by,
        )

    def query_string(self) -> str:
        """The filters as a URL query (for the CSV links: the same rows as the page)."""
        fields = self.model_dump(exclude_none=True, exclude={"currency"})
        return urlencode(fields)


Filters = Annotated[ReportQuery, Query()]


@dataclass
class Section:
    name: str
    heading: str
    measures: str
    report: Report


@dataclass
class Chart:
    title: str
    svg: str
    note: str = ""  # what the chart's marks mean, under it


@dataclass
class ChartSpec:
    chart_id: str
    title: str
    points: list[tuple[str, Any]]
    flagged: list[bool] = field(default_factory=list)
    note: str = ""


@dataclass
class Ledger:
    currency: str
    measures: dict[str, object] = field(default_factory=dict)
    problem: str | None = None


def cell(value: Any) -> str:
    """A report value as the page shows it: the JSON's value, a dash for none."""
    if value is None:
        return "\u2013"  # an en dash, as the other pages show a missing value
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def column_label(name: str) -> str:
    """`aht_median_s` -> `aht median (s)`: the CSV's column, readable."""
    if name.endswith("_s"):
        name = f"{name[:-2]} (s)"
    return name.replace("_", " ")


async def _sections(svc: Services, actor: Actor, f: ReportFilter) -> list[Section]:
    names = [*HEADINGS, *(n for n in KPIS if n not in HEADINGS)]
    return [
        Section(n, HEADINGS.get(n, n), KPIS[n].help, await service.run(svc, actor, n, f))
        for n in names
    ]


async def _charts(
    svc: Services, actor: Actor, f: ReportFilter, kind: str, sections: list[Section]
) -> list[Chart]:
    """SLA attainment over the period's buckets, the backlog by age, throughput per agent."""
    bucket = TREND_BUCKET[kind]
    trend = await service.run(svc, actor, "sla", replace(f, group_by=bucket))
    backlog = (await service.run(svc, actor, "backlog", replace(f, group_by=None))).rows[0]
    agents = next(s.report for s in sections if s.name == "throughput").rows
    flag_note = f"Red, hatched: under {UNDER_THRESHOLD:.0%} of the queue's median."
    specs = [
        ChartSpec(
            "sla",
            f"SLA attainment by {bucket}",
            [(str(r[bucket]), r["attainment"]) for r in trend.rows],
        ),
        ChartSpec(
            "backlog",
            "Open tasks by age (business days)",
            [(b, backlog[b]) for b, _, _ in AGING_BUCKETS],
        ),
        ChartSpec(
            "agents",
            "Tasks completed per agent",
            [(f"{r['agent']} ({r['queue']})", r["completed"]) for r in agents],
            [bool(r["under_threshold"]) for r in agents],
            flag_note,
        ),
    ]
    return await run_in_threadpool(_draw, specs)


def _draw(specs: list[ChartSpec]) -> list[Chart]:
    """The SVG of each chart with something to show (matplotlib: CPU, off the event loop)."""
    drawn = []
    for c in specs:
        svg = ""
        if c.points:
            figure = charts.bar_chart(c.title, c.points, c.flagged, size=(4.4, 2.8))
            svg = charts.svg(figure, f"chart-{c.chart_id}", f"{c.title}. {c.note}".strip())
        drawn.append(Chart(c.title, svg, c.note))
    return drawn


async def _ledger(svc: Services, actor: Actor, q: ReportQuery, now: datetime) -> Ledger | None:
    """DSO, CEI and ADD for callers who see every vendor; billing being away leaves the
    rest of the page standing, with the reason in this section."""
    if not service.sees_every_vendor(actor):
        return None
    currency = q.currency or LEDGER_CURRENCY
    p = service.period_of(q.period, q.at, q.timezone, now)
    try:
        return Ledger(currency, await service.ledger(svc, actor, currency, p))
    except ApiError as exc:
        if exc.kind not in ("unavailable", "invalid"):
            raise
        return Ledger(currency, problem=exc.message)


def _case_types(svc: Services, actor: Actor) -> list[str]:
    if refuse_role(actor, Action.SOP_READ) is not None:
        return []
    return sorted({s.case_type for s in sop_service.list_sops(svc)})


@router.get("/reports")
async def reports_page(request: Request, actor: Reader, svc: ServicesDep, q: Filters) -> Response:
    now = service.now()
    f = q.filter(now)
    sections = await _sections(svc, actor, f)
    period: Period = service.period_of(q.period, q.at, q.timezone, now)
    return render(
        request,
        "reports.html",
        q=q,
        period=period,
        sections=sections,
        charts=await _charts(svc, actor, f, q.period, sections),
        ledger=await _ledger(svc, actor, q, now),
        every_vendor=service.sees_every_vendor(actor),
        case_types=await run_in_threadpool(_case_types, svc, actor),
        group_choices=GROUPS,
        csv_query=q.query_string(),
        cell=cell,
        column_label=column_label,
    )


@router.get("/reports/{name}.csv")
async def report_csv(name: ReportName, actor: Reader, svc: ServicesDep, q: Filters) -> Response:
    """One report's rows as the JSON API's CSV export gives them, for a plain link."""
    f = q.filter(service.now())
    return service.csv_download(await service.run(svc, actor, name, f), f)
