"""The `casebook` command line."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from cli.audit_commands import audit_app
from settings import Settings, get_settings
from workflows.case_models import Role

app = typer.Typer(
    help="Casebook: cases, tasks and SLAs for Order-to-Cash operations.", no_args_is_help=True
)
user_app = typer.Typer(help="Users and API tokens.", no_args_is_help=True)
store_app = typer.Typer(help="The SQL read model.", no_args_is_help=True)
sop_app = typer.Typer(help="SOP template versions.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(store_app, name="store")
app.add_typer(sop_app, name="sop")
app.add_typer(audit_app, name="audit")

DataDir = Annotated[Path | None, typer.Option(help="data directory (CASEBOOK_DATA_DIR)")]
USER_ROLES = [r.value for r in Role]


def _settings(data_dir: Path | None = None) -> Settings:
    settings = get_settings()
    return settings.model_copy(update={"data_dir": data_dir}) if data_dir else settings


def _prepared_engine(settings: Settings):
    from sop_templates.registry import seed_shipped
    from store.db import make_engine, migrate, session_scope

    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    with session_scope(engine) as session:
        seed_shipped(session)
    return engine


@app.command()
def dev(
    data_dir: Annotated[
        Path, typer.Option(help="where cases, Temporal state and mail live")
    ] = Path(".casebook"),
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    temporal_port: Annotated[int, typer.Option(help="Temporal gRPC port")] = 7233,
    smtp_port: Annotated[int, typer.Option(help="loopback SMTP port")] = 1025,
    billing_port: Annotated[int, typer.Option(help="built-in billing service port")] = 8001,
) -> None:
    """Run the whole stack on localhost: Temporal, SMTP to a Maildir, the built-in billing
    service (seeded with demo customers), a worker and the API."""
    from devstack.supervisor import DevStack, Ports, child_env

    data_dir = data_dir.resolve()
    settings = _settings(data_dir)
    overrides = {
        "CASEBOOK_DATA_DIR": str(data_dir),
        "CASEBOOK_API_PORT": str(port),
        "CASEBOOK_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "CASEBOOK_SMTP_HOST": "127.0.0.1",
        "CASEBOOK_SMTP_PORT": str(smtp_port),
        "CASEBOOK_BILLING_URL": f"http://127.0.0.1:{billing_port}",
    }
    _prepared_engine(settings).dispose()
    ports = Ports(api=port, temporal=temporal_port, smtp=smtp_port, billing=billing_port)
    stack = DevStack(data_dir, ports, child_env(overrides))
    try:
        stack.start()
    except (RuntimeError, KeyboardInterrupt) as exc:
        stack.stop()
        typer.echo(f"casebook dev: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"Casebook is up: API http://127.0.0.1:{port} (docs at /docs), Temporal UI "
        f"http://127.0.0.1:{temporal_port + 1000}, billing http://127.0.0.1:{billing_port}, "
        f"mail in {data_dir / 'mail'}. Ctrl-C stops it."
    )
    raise typer.Exit(stack.wait())


@app.command()
def api() -> None:
    """Serve the HTTP API."""
    import uvicorn

    from api.app import create_app

    settings = get_settings()
    _prepared_engine(settings).dispose()
    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning"
    )


@app.command()
def worker() -> None:
    """Run a Temporal worker for cases (run several to scale out)."""
    asyncio.run(_run_worker(get_settings()))


async def _run_worker(settings: Settings) -> None:
    from workflows.worker import build_worker

    engine = _prepared_engine(settings)
    client = await _connect_with_retry(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with build_worker(client, settings.task_queue, engine, settings):
        await stop.wait()


async def _connect_with_retry(settings: Settings, attempts: int = 60):
    from workflows.client import connect

    for attempt in range(attempts):
        try:
            return await connect(settings.temporal_address, settings.temporal_namespace)
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


@app.command(hidden=True)
def mailserver() -> None:
    """The dev stack's SMTP server, delivering into <data dir>/mail."""
    from devstack.mail_server import serve_forever

    settings = get_settings()
    serve_forever(settings.data_dir / "mail", settings.smtp_host, settings.smtp_port)


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Create or upgrade the database schema and seed the shipped SOP templates."""
    _prepared_engine(_settings(data_dir)).dispose()
    typer.echo("database is up to date")


@user_app.command("add")
def user_add(
    name: str,
    role: Annotated[str, typer.Option(help="one of: " + ", ".join(USER_ROLES))],
    vendor: Annotated[str | None, typer.Option(help="BPO vendor the user works for")] = None,
    queue: Annotated[list[str] | None, typer.Option(help="a queue the user serves")] = None,
    email: Annotated[str | None, typer.Option(help="where escalation notices go")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a user; prints its API token alone on the last line (shown only once)."""
    from store.db import session_scope
    from store.users import UserExistsError, create_user

    if role not in USER_ROLES:
        raise typer.BadParameter(
            f"unknown role {role!r}; one of: {', '.join(USER_ROLES)}", param_hint="--role"
        )
    engine = _prepared_engine(_settings(data_dir))
    try:
        with session_scope(engine) as session:
            user, token = create_user(
                session, name=name, role=Role(role), vendor=vendor, queues=queue or [], email=email
            )
    except UserExistsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"created user {user.name} (role {user.role}, vendor {user.vendor or '-'}, "
        f"queues {', '.join(user.queues) or '-'})"
    )
    typer.echo(token)


@store_app.command("rebuild")
def store_rebuild(data_dir: DataDir = None) -> None:
    """Rebuild the case/task read model from Temporal."""
    count = asyncio.run(_rebuild(_settings(data_dir)))
    typer.echo(f"rebuilt the read model from {count} cases")


async def _rebuild(settings: Settings) -> int:
    from store.db import session_scope
    from store.read_model import delete_all, project_snapshot
    from workflows.client import all_case_ids, final_or_current
    from workflows.worker import build_worker

    engine = _prepared_engine(settings)
    client = await _connect_with_retry(settings, attempts=1)
    # Queries need a worker; run one here so a rebuild works with no worker running.
    async with build_worker(client, settings.task_queue, engine, settings):
        snapshots = [
            await final_or_current(client, cid)
            for cid in await all_case_ids(client, settings.task_queue)
        ]
    with session_scope(engine) as session:
        delete_all(session)
    for snapshot in snapshots:
        project_snapshot(engine, snapshot)
    return len(snapshots)


@sop_app.command("publish")
def sop_publish(
    path: Path,
    by: Annotated[str, typer.Option(help="who publishes (recorded)")] = "sop_owner",
    data_dir: DataDir = None,
) -> None:
    """Validate and publish a template version file; new cases pin it from now on."""
    from sop_templates.registry import SopConflictError, load_document, publish_document
    from sop_templates.validation import InvalidTemplateError
    from store.db import session_scope

    engine = _prepared_engine(_settings(data_dir))
    try:
        with session_scope(engine) as session:
            row = publish_document(session, load_document(path), actor=by)
    except InvalidTemplateError as exc:
        _sop_refused(*(str(error) for error in exc.errors))
    except SopConflictError as exc:
        _sop_refused(f"error: {exc}")
    typer.echo(f"published {row.name} v{row.version} ({row.content_hash})")


@sop_app.command("validate")
def sop_validate(path: Path) -> None:
    """Validate a template version file; prints every error with its path."""
    from sop_templates.registry import load_document
    from sop_templates.validation import InvalidTemplateError, parse_template

    try:
        template = parse_template(load_document(path), require_approval_rules=True)
    except InvalidTemplateError as exc:
        _sop_refused(*(str(error) for error in exc.errors))
    typer.echo(json.dumps({"valid": True, "name": template.name, "version": template.version}))


@sop_app.command("diff")
def sop_diff(
    name: str,
    from_version: Annotated[int, typer.Argument(metavar="FROM", min=1)],
    to_version: Annotated[int, typer.Argument(metavar="TO", min=1)],
    as_json: Annotated[bool, typer.Option("--json", help="the changes as JSON")] = False,
    data_dir: DataDir = None,
) -> None:
    """What changed between two stored versions: steps, transitions, SLAs, parameters."""
    from sop_templates.diff import render_text
    from sop_templates.registry import UnknownSopError, diff_versions
    from store.db import session_scope

    engine = _prepared_engine(_settings(data_dir))
    try:
        with session_scope(engine) as session:
            changes = diff_versions(session, name, from_version, to_version)
    except UnknownSopError as exc:
        _sop_refused(f"error: {exc}")
    if as_json:
        typer.echo(json.dumps([c.as_dict() for c in changes], indent=2))
    else:
        typer.echo(render_text(changes, name, from_version, to_version))


def _sop_refused(*lines: str) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(1)


if __name__ == "__main__":
    app()
