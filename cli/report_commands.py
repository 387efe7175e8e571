"""`casebook report daily|weekly|monthly|qbr`: the service reviews of one vendor."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from settings import get_settings

report_app = typer.Typer(help="Service reviews: KPIs of a vendor by period.", no_args_is_help=True)

Vendor = Annotated[str, typer.Option(help="the vendor reviewed")]
At = Annotated[str | None, typer.Option(help="a day in the period (YYYY-MM-DD); default today")]
Tz = Annotated[str, typer.Option(help="IANA time zone the period is read in")]
Format = Annotated[str, typer.Option(help="text, json or csv (one CSV block per section)")]


def _review(kind: str, vendor: str, at: str | None, tz: str, fmt: str) -> None:
    from reports import digest
    from reports.export import as_csv, as_json
    from reports.kpis import ReportFilter
    from reports.periods import PeriodError, parse_anchor, period
    from store.db import make_engine, migrate

    if fmt not in ("text", "json", "csv"):
        raise typer.BadParameter(f"{fmt!r} is not text, json or csv", param_hint="--format")
    now = datetime.now(UTC)
    try:
        p = period(kind, parse_anchor(at, kind, tz, now), tz)
    except PeriodError as exc:
        raise typer.BadParameter(str(exc)) from None
    engine = make_engine(get_settings().resolved_database_url())
    migrate(engine)
    f = ReportFilter(start=p.start, end=p.end, timezone=tz, vendor=vendor, as_of=min(p.end, now))
    name = {"day": "Daily", "week": "Weekly", "month": "Monthly"}[kind]
    r = digest.review(engine, f"{name} review of {vendor}: {p.label}", f)
    if fmt == "json":
        sections = [{"title": title, **as_json(rep, r.f)} for title, rep in r.sections]
        typer.echo(json.dumps({"title": r.title, "sections": sections}, indent=2))
    elif fmt == "csv":
        typer.echo("\n".join(f"# {title}\n{as_csv(rep)}" for title, rep in r.sections))
    else:
        typer.echo(digest.as_text(r))


@report_app.command("daily")
def daily(vendor: Vendor, at: At = None, tz: Tz = "UTC", format: Format = "text") -> None:
    """The review of a day (today unless --at) for a vendor."""
    _review("day", vendor, at, tz, format)


@report_app.command("weekly")
def weekly(vendor: Vendor, at: At = None, tz: Tz = "UTC", format: Format = "text") -> None:
    """The review of the ISO week (Monday to Sunday) that holds the day."""
    _review("week", vendor, at, tz, format)


@report_app.command("monthly")
def monthly(vendor: Vendor, at: At = None, tz: Tz = "UTC", format: Format = "text") -> None:
    """The review of the month that holds the day."""
    _review("month", vendor, at, tz, format)


@report_app.command("qbr")
def qbr(
    vendor: Vendor,
    quarter: Annotated[str, typer.Option(help="the quarter, e.g. 2026Q4")],
    out: Annotated[Path, typer.Option(help="directory the HTML and PDF are written to")] = Path(
        "."
    ),
) -> None:
    """The quarterly business review pack of a vendor: one HTML file and its PDF."""
    from reports import qbr as pack
    from reports.periods import PeriodError
    from reports.targets import TargetsError
    from store.db import make_engine, migrate

    engine = make_engine(get_settings().resolved_database_url())
    migrate(engine)
    try:
        built = pack.build(engine, vendor, quarter)
    except (PeriodError, pack.QbrError, TargetsError) as exc:
        raise typer.BadParameter(str(exc)) from None
    for path in pack.write(built, out):
        typer.echo(str(path))


@report_app.command("schedule")
def schedule(
    every: Annotated[str, typer.Option(help="day, week (Mondays) or month (the 1st)")] = "day",
    hour: Annotated[int, typer.Option(min=0, max=23, help="the hour (UTC) it runs at")] = 6,
) -> None:
    """Email each vendor's leads (users with an email) the review of the period that just
    ended, from a Temporal Schedule; running this again updates the schedule."""
    import asyncio

    from workflows.client import connect

    if every not in ("day", "week", "month"):
        raise typer.BadParameter(f"{every!r} is not day, week or month", param_hint="--every")
    settings = get_settings()

    async def upsert() -> str:
        client = await connect(settings.temporal_address, settings.temporal_namespace)
        return await upsert_digest_schedule(client, settings.task_queue, every, hour)

    typer.echo(f"schedule {asyncio.run(upsert())}: every {every} at {hour:02d}:00 UTC")


async def upsert_digest_schedule(client: Any, task_queue: str, every: str, hour: int) -> str:
    """Create the digest's schedule, or replace its spec and action if it exists."""
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleCalendarSpec,
        ScheduleRange,
        ScheduleSpec,
        ScheduleUpdate,
    )

    from workflows.digest_workflow import DIGEST_WORKFLOW, DigestInput

    calendar = ScheduleCalendarSpec(
        hour=[ScheduleRange(hour)],
        day_of_week=[ScheduleRange(1)] if every == "week" else [ScheduleRange(0, 6)],
        day_of_month=[ScheduleRange(1)] if every == "month" else [ScheduleRange(1, 31)],
    )
    schedule_id = f"report-digest-{every}"
    wanted = Schedule(
        action=ScheduleActionStartWorkflow(
            DIGEST_WORKFLOW,
            DigestInput(kind=every),
            id=f"report-digest-{every}-run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(calendars=[calendar]),
    )
    try:
        await client.create_schedule(schedule_id, wanted)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)
        await handle.update(lambda _: ScheduleUpdate(schedule=wanted))
    return schedule_id


@report_app.command("hypercare")
def hypercare(
    sop: Annotated[str, typer.Option(help="the SOP's name")],
    version: Annotated[int, typer.Option(help="the new version, compared with the one before")],
    vendor: Annotated[str | None, typer.Option(help="only this vendor's work")] = None,
    format: Format = "text",
) -> None:
    """A new SOP version's steps since it was published, beside the previous version's
    over as long a time before: SLA attainment, handle time, loop backs."""
    from reports import digest
    from reports.export import as_csv
    from reports.hypercare import HypercareError, compare, window_of
    from store.db import make_engine, migrate

    engine = make_engine(get_settings().resolved_database_url())
    migrate(engine)
    try:
        report = compare(engine, sop, version, datetime.now(UTC), vendor=vendor)
    except HypercareError as exc:
        raise typer.BadParameter(str(exc)) from None
    if format == "csv":
        typer.echo(as_csv(report), nl=False)
        return
    window = window_of(engine, sop, version)
    opened = (
        f"window until {window.until:%Y-%m-%d %H:%M} UTC, warn factor {window.warn_factor:g}, "
        f"owner {window.owner}"
        if window
        else "published without a hypercare window"
    )
    lines = digest.table_lines(report) if report.rows else ["(no task on this version yet)"]
    title = f"Hypercare of {sop} v{version} against v{version - 1}"
    typer.echo("\n".join([title, opened, *lines]))
