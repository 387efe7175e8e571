"""/reports: the KPIs for leads, admins and auditors (JSON, or CSV with Accept: text/csv)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse, Response

from access.policy import Action
from api.deps import ServicesDep, authorize
from api.schemas import ShortText
from api.services import reports as service
from domain.case_models import Actor
from reports.export import as_csv, as_json
from reports.kpis import GROUPS, KPIS

router = APIRouter(tags=["reports"])

Reader = Annotated[Actor, Depends(authorize(Action.REPORTS))]
PeriodKind = Literal["day", "week", "month", "quarter"]
GroupBy = Literal[GROUPS]  # type: ignore[valid-type]
# An unknown report is a 422 listing the known ones, like any closed set of values.
ReportName = Literal[tuple(KPIS)]  # type: ignore[valid-type]


@router.get("/reports")
async def list_reports(actor: Reader) -> list[dict[str, str]]:
    """The reports `GET /reports/{name}` answers, with what each measures."""
    return [{"name": name, "measures": kpi.help} for name, kpi in KPIS.items()]


@router.get("/reports/ledger")
async def ledger(
    actor: Reader,
    svc: ServicesDep,
    currency: Annotated[str, Query(pattern="^[A-Z]{3}$", description="ISO 4217")],
    period: PeriodKind = "month",
    at: Annotated[str | None, Query(description="a day in the period, or 2026Q4")] = None,
) -> dict[str, Any]:
    """DSO, best-possible DSO, average days delinquent and CEI of one currency over the
    period, from the billing ledger as it stood (admins and auditors: it is not a vendor's)."""
    p = service.period_of(period, at, "UTC", service.now())
    return await service.ledger(svc, actor, currency, p)


@router.get(
    "/reports/hypercare",
    responses={200: {"content": {"text/csv": {}}, "description": "the steps' rows"}},
)
async def hypercare(
    actor: Reader,
    svc: ServicesDep,
    sop: ShortText,
    version: Annotated[int, Query(ge=2, le=1_000_000, description="the new version")],
    vendor: ShortText | None = None,
    accept: Annotated[str, Header()] = "application/json",
) -> Any:
    """An SOP version's steps since its publication (to the end of its hypercare window)
    beside the previous version's over as long a time before it: SLA attainment, handle
    time, loop backs; with the version's hypercare window (null without one)."""
    window, result = await service.hypercare(svc, actor, sop, version, vendor)
    if "text/csv" in accept:
        return Response(as_csv(result), media_type="text/csv")
    shown = window.model_dump(mode="json", exclude={"owner_email"}) if window else None
    body = {"report": result.name, "sop": sop, "version": version, "against": version - 1}
    return JSONResponse({**body, "window": shown, "columns": result.columns, "rows": result.rows})


@router.get(
    "/reports/{name}",
    responses={200: {"content": {"text/csv": {}}, "description": "the report's rows"}},
)
async def report(
    name: ReportName,
    actor: Reader,
    svc: ServicesDep,
    period: PeriodKind = "week",
    at: Annotated[str | None, Query(description="a day in the period, or 2026Q4")] = None,
    tz: Annotated[str, Query(max_length=64, description="IANA time zone of the period")] = "UTC",
    vendor: ShortText | None = None,
    queue: ShortText | None = None,
    region: ShortText | None = None,
    case_type: ShortText | None = None,
    sop_name: ShortText | None = None,
    sop_version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    agent: ShortText | None = None,
    group_by: GroupBy | None = None,
    accept: Annotated[str, Header()] = "application/json",
) -> Any:
    """One KPI (see `GET /reports`) for a period in a time zone, filtered by vendor, queue,
    region, case type, SOP version and agent, optionally grouped by a dimension or by
    day/week/month. Leads see their vendor's only; another vendor is 403."""
    f = service.report_filter(
        kind=period,
        at=at,
        tz=tz,
        now=service.now(),
        vendor=vendor,
        queue=queue,
        region=region,
        case_type=case_type,
        sop_name=sop_name,
        sop_version=sop_version,
        agent=agent,
        group_by=group_by,
    )
    result = await service.run(svc, actor, name, f)
    if "text/csv" in accept:
        return service.csv_download(result, f)
    return JSONResponse(as_json(result, f))
