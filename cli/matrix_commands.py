"""`casebook matrix ...`: versions of the escalation matrix, as on /escalation-matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import yaml

from store.tables import EscalationMatrixVersionRow

matrix_app = typer.Typer(help="Versions of the escalation matrix.", no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option(help="data directory (CASEBOOK_DATA_DIR)")]


def _engine(data_dir: Path | None):
    from cli.main import _prepared_engine, _settings  # main registers this app: import late

    return _prepared_engine(_settings(data_dir))


def _document(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        _refused(f"error: {path}: the escalation matrix must be a YAML mapping")
    return document


def _refused(*lines: str) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(1)


@matrix_app.command("list")
def matrix_list(data_dir: DataDir = None) -> None:
    """Every version: its status, who created, published or retired it, and when."""
    from escalations.matrix_registry import list_versions
    from store.db import session_scope

    with session_scope(_engine(data_dir)) as session:
        rows = list_versions(session)
    for r in rows:
        typer.echo(f"v{r.version} {r.status}: " + "; ".join(_who_when(r)))


def _who_when(row: EscalationMatrixVersionRow) -> list[str]:
    done = [
        ("created", row.created_at, row.created_by),
        ("published", row.published_at, row.published_by),
        ("retired", row.retired_at, row.retired_by),
    ]
    said = [f"{what} {at:%Y-%m-%d %H:%M} by {by}" for what, at, by in done if at is not None]
    return said + ([f"note: {row.note}"] if row.note else [])


@matrix_app.command("show")
def matrix_show(version: Annotated[int, typer.Argument(min=1)], data_dir: DataDir = None) -> None:
    """A stored version's content, as YAML."""
    from escalations.matrix_registry import UnknownMatrixVersionError, get_version
    from store.db import session_scope

    try:
        with session_scope(_engine(data_dir)) as session:
            row = get_version(session, version)
    except UnknownMatrixVersionError as exc:
        _refused(f"error: {exc}")
    typer.echo(f"# escalation matrix v{row.version} ({row.status}, {row.content_hash})")
    typer.echo(yaml.safe_dump(row.content, sort_keys=False).rstrip())


@matrix_app.command("validate")
def matrix_validate(path: Path) -> None:
    """Validate a matrix file; prints every error with its path."""
    from escalations.matrix_registry import parse_matrix
    from sop_templates.validation import InvalidTemplateError

    try:
        matrix = parse_matrix(_document(path))
    except InvalidTemplateError as exc:
        _refused(*(str(error) for error in exc.errors))
    typer.echo(json.dumps({"valid": True, "rules": len(matrix.rules)}))


@matrix_app.command("publish")
def matrix_publish(
    path: Path,
    by: Annotated[str, typer.Option(help="who publishes (recorded)")] = "sop_owner",
    note: Annotated[str | None, typer.Option(help="what changed (recorded)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Validate a matrix file, store it as the next version and publish it: new cases
    resolve their escalation routes from it from now on."""
    from escalations.matrix_registry import MatrixConflictError, create_draft, publish
    from sop_templates.validation import InvalidTemplateError
    from store.db import session_scope

    document = _document(path)
    try:
        with session_scope(_engine(data_dir)) as session:
            draft = create_draft(session, document, actor=by, note=note)
            row = publish(session, draft.version, actor=by)
    except InvalidTemplateError as exc:
        _refused(*(str(error) for error in exc.errors))
    except MatrixConflictError as exc:
        _refused(f"error: {exc}")
    typer.echo(f"published escalation matrix v{row.version} ({row.content_hash})")


@matrix_app.command("diff")
def matrix_diff(
    from_version: Annotated[int, typer.Argument(metavar="FROM", min=1)],
    to_version: Annotated[int, typer.Argument(metavar="TO", min=1)],
    data_dir: DataDir = None,
) -> None:
    """What changed between two stored versions, rule by rule and level by level."""
    from escalations.matrix_registry import UnknownMatrixVersionError, diff_versions
    from sop_templates.diff import render_text
    from store.db import session_scope

    try:
        with session_scope(_engine(data_dir)) as session:
            changes = diff_versions(session, from_version, to_version)
    except UnknownMatrixVersionError as exc:
        _refused(f"error: {exc}")
    typer.echo(render_text(changes, "escalation matrix", from_version, to_version))
