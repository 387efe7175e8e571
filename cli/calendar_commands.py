"""`casebook calendars apply`: a changed business calendar reaches the cases already open."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from settings import Settings, get_settings

calendars_app = typer.Typer(help="Business calendars of the SLAs.", no_args_is_help=True)

APPLIED_BY = "calendars-apply"


@calendars_app.command("apply")
def calendars_apply(
    file: Annotated[
        Path | None,
        typer.Option(
            help="a calendars file in the shape of escalations/calendars.yaml; "
            "default: the shipped one"
        ),
    ] = None,
) -> None:
    """Move every open case's SLA clocks onto the calendars as they are now.

    A case pins its calendars when it opens, so editing the calendar file (a closure day, a
    new holidays release) never moves a running case's deadlines by itself; this does, and
    each case records what moved.
    """
    moved = asyncio.run(apply_to_open_cases(get_settings(), file))
    for case_id, names in moved.items():
        typer.echo(f"{case_id}: {', '.join(names) if names else 'unchanged'}")
    typer.echo(f"{sum(1 for n in moved.values() if n)} of {len(moved)} open cases moved")


async def apply_to_open_cases(settings: Settings, file: Path | None) -> dict[str, list[str]]:
    """Each open case of the task queue and the calendars that changed for it."""
    from domain.case_models import Actor, ApplyCalendars, Role
    from escalations.calendars import PINNED_YEARS_AHEAD, calendar_facts, load_calendars
    from workflows.client import apply_calendars, connect, open_case_ids

    year = datetime.now(UTC).year
    years = range(year, year + PINNED_YEARS_AHEAD + 1)
    facts = [calendar_facts(c, years) for c in load_calendars(file).values()]
    cmd = ApplyCalendars(actor=Actor(name=APPLIED_BY, role=Role.ADMIN), calendars=facts)
    client = await connect(settings.temporal_address, settings.temporal_namespace)
    timeout = timedelta(seconds=settings.update_timeout_seconds)
    return {
        case_id: await apply_calendars(client, case_id, cmd, timeout)
        for case_id in await open_case_ids(client, settings.task_queue)
    }
