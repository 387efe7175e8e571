"""`casebook audit`: timeline, replay and export of a case, for auditors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session, col, select

from settings import get_settings

audit_app = typer.Typer(
    help="Audit a case: timeline, replay, evidence export.", no_args_is_help=True
)


async def _gather(case_id: str):
    from audit.timeline import timeline
    from store.db import make_engine
    from store.tables import OutboxRow
    from workflows.client import connect, get_case

    settings = get_settings()
    client = await connect(settings.temporal_address, settings.temporal_namespace)
    engine = make_engine(settings.resolved_database_url())
    case = await get_case(client, case_id)
    history = await client.get_workflow_handle(case_id).fetch_history()
    with Session(engine) as session:
        emails = session.exec(
            select(OutboxRow).where(OutboxRow.case_id == case_id).order_by(col(OutboxRow.id))
        ).all()
    return case, history, timeline(case, emails), engine


@audit_app.command("timeline")
def audit_timeline(case_id: str) -> None:
    """Print the case's timeline: every action with its instant and actor."""
    from audit.timeline import render

    case, _history, entries, _engine = asyncio.run(_gather(case_id))
    typer.echo(render(case, entries))


@audit_app.command("replay")
def audit_replay(case_id: str) -> None:
    """Replay the recorded history against the current code; exit 1 if it diverges."""
    from audit.replay import replay_case

    _case, history, _entries, _engine = asyncio.run(_gather(case_id))
    verdict = asyncio.run(replay_case(history))
    typer.echo(json.dumps(verdict.summary(), indent=2))
    raise typer.Exit(0 if verdict.deterministic else 1)


@audit_app.command("export")
def audit_export(
    case_ids: Annotated[list[str], typer.Argument(help="one or more case ids")],
    out: Annotated[Path, typer.Option(help="where the bundles go")] = Path("evidence"),
) -> None:
    """Write each case's evidence bundle: raw history, timeline, SOP content, hashes."""
    from audit.export import write_bundle
    from store.tables import SopVersionRow

    for case_id in case_ids:
        case, history, entries, engine = asyncio.run(_gather(case_id))
        with Session(engine) as session:
            sop = session.get(SopVersionRow, (case.sop.name, case.sop.version))
        typer.echo(str(write_bundle(out, case, history, entries, sop)))
