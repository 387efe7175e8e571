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
    from audit.sources import current_state, load_runs
    from audit.timeline import timeline
    from store.db import make_engine
    from store.tables import OutboxRow
    from workflows.client import connect

    settings = get_settings()
    client = await connect(settings.temporal_address, settings.temporal_namespace)
    engine = make_engine(settings.resolved_database_url())
    case = await current_state(client, engine, case_id)
    history = await load_runs(client, engine, case_id)
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
    from audit.replay import replay_runs

    _case, runs, _entries, _engine = asyncio.run(_gather(case_id))
    verdict = asyncio.run(replay_runs(runs))
    typer.echo(json.dumps(verdict.summary(), indent=2))
    raise typer.Exit(0 if verdict.deterministic else 1)


@audit_app.command("export")
def audit_export(
    case_ids: Annotated[list[str], typer.Argument(help="one or more case ids")],
    out: Annotated[Path, typer.Option(help="where the bundles go")] = Path("evidence"),
) -> None:
    """Write each case's evidence bundle (raw history, timeline, SOP content, hashes), and one
    OCEL 2.0 event log of all of them (`ocel.json`) for process mining."""
    from audit.export import write_bundle
    from audit.ocel import ocel_log
    from store.tables import SopVersionRow

    cases = []
    for case_id in case_ids:
        case, history, entries, engine = asyncio.run(_gather(case_id))
        with Session(engine) as session:
            sop = session.get(SopVersionRow, (case.sop.name, case.sop.version))
        typer.echo(str(write_bundle(out, case, history, entries, sop)))
        cases.append(case)
    (out / "ocel.json").write_text(json.dumps(ocel_log(cases), indent=2))
    typer.echo(str(out / "ocel.json"))


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the archive's hash chain; exit 1 naming each altered or missing case."""
    from store import archive
    from store.db import make_engine

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url())
    with Session(engine) as session:
        problems = archive.verify(session, settings.archive_dir)
        count = len(session.exec(select(archive.CaseArchiveRow)).all())
    for problem in problems:
        typer.echo(f"FAIL {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"archive intact: {count} cases, chain verified")
