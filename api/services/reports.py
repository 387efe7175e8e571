"""GET /reports: a KPI over the facts, in the caller's vendor scope."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from access.policy import Action, reach
from api.deps import Services
from api.errors import ApiError
from api.services.sweeps import billing_of
from billing.contract import BillingBusinessError
from domain.case_models import Actor, HypercareWindow
from reports import hypercare as hypercare_report
from reports import kpis
from reports.export import as_csv
from reports.kpis import Report, ReportError, ReportFilter
from reports.ledger import ledger_measures
from reports.periods import Period, PeriodError, parse_anchor, period


def period_of(kind: str, at: str | None, tz: str, now: datetime) -> Period:
    try:
        return period(kind, parse_anchor(at, kind, tz, now), tz)
    except PeriodError as exc:
        field = str(exc).split(":")[0]
        raise ApiError("invalid", str(exc), {"fields": {field: str(exc)}}) from None


def report_filter(
    *,
    kind: str,
    at: str | None,
    tz: str,
    now: datetime,
    **filters: object,
) -> ReportFilter:
    """The filter of a request: the period (`kind` around the day `at`, in `tz`) and the
    dimensions; a bad value is a 422 naming the parameter."""
    try:
        p = period(kind, parse_anchor(at, kind, tz, now), tz)
    except PeriodError as exc:
        raise ApiError(
            "invalid", str(exc), {"fields": {str(exc).split(":")[0]: str(exc)}}
        ) from None
    as_of = min(p.end, now)
    return ReportFilter(start=p.start, end=p.end, timezone=tz, as_of=as_of, **filters)  # type: ignore[arg-type]


def scoped(actor: Actor, f: ReportFilter) -> ReportFilter:
    """The facts the caller may count: its vendor (and vendor-less work where shared), or
    any vendor; asking for a vendor outside that is refused, not answered empty."""
    r = reach(actor, Action.REPORTS)
    if r.nothing:
        raise ApiError("forbidden", f"{actor.name} may not read reports")
    if r.all_vendors:
        return f
    if f.vendor is not None and f.vendor != r.vendor:
        raise ApiError("forbidden", f"{actor.name} may not read vendor {f.vendor}'s reports")
    allowed: list[str | None] = [r.vendor, *([None] if r.vendorless else [])]
    return replace(f, vendors=allowed)


async def run(svc: Services, actor: Actor, name: str, f: ReportFilter) -> Report:
    f = scoped(actor, f)
    try:
        return await run_in_threadpool(kpis.run, svc.engine, name, f)
    except ReportError as exc:
        field = str(exc).split(":")[0]
        kind = "not_found" if field == "report" else "invalid"
        raise ApiError(kind, str(exc), {"fields": {field: str(exc)}}) from None


async def ledger(svc: Services, actor: Actor, currency: str, p: Period) -> dict[str, object]:
    """DSO, CEI and ADD over the period's days; the ledger is the company's, not a
    vendor's: only callers who see every vendor may read it."""
    if not sees_every_vendor(actor):
        raise ApiError("forbidden", f"{actor.name} sees one vendor's work; the ledger is not")
    months = max(1, len(p.months()))
    async with billing_of(svc) as billing:
        try:
            return await ledger_measures(
                billing, currency, p.first_day, p.next_first_day - timedelta(days=1), months
            )
        except BillingBusinessError as exc:
            raise ApiError("invalid", str(exc), {"fields": {"currency": str(exc)}}) from None


async def hypercare(
    svc: Services, actor: Actor, sop: str, version: int, vendor: str | None
) -> tuple[HypercareWindow | None, Report]:
    """A version's steps beside the previous version's, in the caller's vendor scope, and
    its hypercare window (None when it was published without one)."""
    at = now()
    f = scoped(actor, ReportFilter(start=at, end=at, vendor=vendor))

    def answer() -> tuple[HypercareWindow | None, Report]:
        report = hypercare_report.compare(
            svc.engine, sop, version, at, vendor=f.vendor, vendors=f.vendors
        )
        return hypercare_report.window_of(svc.engine, sop, version), report

    try:
        return await run_in_threadpool(answer)
    except hypercare_report.HypercareError as exc:
        field = str(exc).split(":")[0]
        kind = "not_found" if field == "sop" else "invalid"
        raise ApiError(kind, str(exc), {"fields": {field: str(exc)}}) from None


def sees_every_vendor(actor: Actor) -> bool:
    """Whether the caller's reports span every vendor (and so may include the ledger)."""
    return reach(actor, Action.REPORTS).all_vendors


def csv_download(result: Report, f: ReportFilter) -> Response:
    """The report as a CSV attachment named after it and its period's first day (the JSON
    API with `Accept: text/csv` and the console's download link)."""
    filename = f"{result.name}-{f.start.date().isoformat()}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(as_csv(result), media_type="text/csv", headers=headers)


def now() -> datetime:
    return datetime.now(UTC)
