"""The `casebook` command line."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from sqlmodel import Session

from cli.audit_commands import audit_app
from cli.calendar_commands import calendars_app
from cli.matrix_commands import matrix_app
from cli.report_commands import report_app
from domain.case_models import HypercareTerms, Role
from settings import Settings, get_settings
from store.users import aware

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
app.add_typer(calendars_app, name="calendars")
app.add_typer(matrix_app, name="matrix")
app.add_typer(report_app, name="report")

DataDir = Annotated[Path | None, typer.Option(help="data directory (CASEBOOK_DATA_DIR)")]
USER_ROLES = [r.value for r in Role]
T = TypeVar("T")


def _settings(data_dir: Path | None = None) -> Settings:
    settings = get_settings()
    return settings.model_copy(update={"data_dir": data_dir}) if data_dir else settings


def _prepared_engine(settings: Settings):
    from escalations.matrix_registry import seed_shipped_matrix
    from sop_templates.registry import seed_shipped
    from store.db import make_engine, migrate, session_scope

    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    with session_scope(engine) as session:
        seed_shipped(session)
        seed_shipped_matrix(session)
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
    from reconcile.reconciler import reconcile_after_start
    from workflows.worker import build_worker

    engine = _prepared_engine(settings)
    client = await _connect_with_retry(settings, serve_metrics=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with build_worker(client, settings.task_queue, engine, settings):
        # A restarted worker looks back once, in the background (the API keeps the period).
        looking_back = None
        if settings.reconcile_every > 0:
            closed_within = timedelta(hours=settings.reconcile_closed_within_hours)
            looking_back = asyncio.create_task(
                reconcile_after_start(client, engine, settings.task_queue, closed_within)
            )
        await stop.wait()
        if looking_back is not None:
            looking_back.cancel()


async def _connect_with_retry(settings: Settings, attempts: int = 60, serve_metrics: bool = False):
    from workflows.client import connect, metrics_runtime

    address = settings.worker_metrics_address
    runtime = metrics_runtime(address) if serve_metrics and address else None
    for attempt in range(attempts):
        try:
            return await connect(settings.temporal_address, settings.temporal_namespace, runtime)
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
    expires_in: Annotated[
        str | None, typer.Option(help="the token expires after this long: 90d, 12h, 30m")
    ] = None,
    expires_at: Annotated[
        str | None,
        typer.Option(help="the token expires at this ISO date (00:00 UTC) or time with zone"),
    ] = None,
    cross_vendor: Annotated[
        bool, typer.Option(help="an agent that works every vendor's cases (else --vendor)")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Create a user; prints its API token alone on the last line (shown only once)."""
    from store.db import session_scope
    from store.users import UserExistsError, VendorRequiredError, create_user

    if role not in USER_ROLES:
        raise typer.BadParameter(
            f"unknown role {role!r}; one of: {', '.join(USER_ROLES)}", param_hint="--role"
        )
    expiry = _expiry(expires_in, expires_at)
    engine = _prepared_engine(_settings(data_dir))
    try:
        with session_scope(engine) as session:
            user, token = create_user(
                session,
                name=name,
                role=Role(role),
                vendor=vendor,
                queues=queue or [],
                email=email,
                expires_at=expiry,
                cross_vendor=cross_vendor,
            )
    except (UserExistsError, VendorRequiredError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"created user {user.name} (role {user.role}, vendor {user.vendor or '-'}, "
        f"queues {', '.join(user.queues) or '-'})"
    )
    typer.echo(token)


_DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def _expiry(expires_in: str | None, expires_at: str | None) -> datetime | None:
    """When a new token expires (None: never); a bad or past value names its option."""
    if expires_in and expires_at:
        raise typer.BadParameter("give --expires-in or --expires-at, not both")
    now = datetime.now(UTC)
    if expires_in:
        number, unit = expires_in[:-1], expires_in[-1:]
        if unit not in _DURATION_UNITS or not number.isascii() or not number.isdigit():
            raise typer.BadParameter(
                f"{expires_in!r}: a whole number of d, h or m (e.g. 90d)", param_hint="--expires-in"
            )
        return now + timedelta(**{_DURATION_UNITS[unit]: int(number)})
    if expires_at:
        moment = _moment(expires_at)
        if moment <= now:
            raise typer.BadParameter(
                f"{expires_at!r} is not in the future", param_hint="--expires-at"
            )
        return moment
    return None


def _moment(text: str) -> datetime:
    try:
        if len(text) == 10:  # a date: the token works until that day begins (UTC)
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO date or time", param_hint="--expires-at"
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(
            f"{text!r} has no time zone (e.g. 2027-03-31T18:00:00+00:00)",
            param_hint="--expires-at",
        )
    return moment


def _at(moment: datetime | None) -> str:
    return aware(moment).isoformat(timespec="seconds") if moment else "-"


@user_app.command("list")
def user_list(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per user")] = False,
    data_dir: DataDir = None,
) -> None:
    """Every user: role, vendor, queues, token status (active, disabled, expired), expiry and
    last use (recorded at most once a minute)."""
    from store.users import list_users, token_status

    now = datetime.now(UTC)
    with Session(_prepared_engine(_settings(data_dir))) as session:
        users = list_users(session)
    for user in users:
        line = {
            "name": user.name,
            "role": user.role,
            "vendor": user.vendor,
            "queues": user.queues,
            "status": token_status(user, now),
            "expires_at": _at(user.expires_at),
            "last_used_at": _at(user.last_used_at),
        }
        if as_json:
            typer.echo(json.dumps(line))
        else:
            typer.echo(
                f"{user.name}  {user.role}  vendor {user.vendor or '-'}  "
                f"queues {', '.join(user.queues) or '-'}  {line['status']}  "
                f"expires {line['expires_at']}  last used {line['last_used_at']}"
            )


@user_app.command("disable")
def user_disable(name: str, data_dir: DataDir = None) -> None:
    """Disable a user: its token answers 401 from now on (`user enable` undoes it)."""
    from store.users import disable_user

    _change_user(lambda session: disable_user(session, name), data_dir)
    typer.echo(f"disabled user {name}")


@user_app.command("enable")
def user_enable(name: str, data_dir: DataDir = None) -> None:
    """Let a disabled user's token in again."""
    from store.users import enable_user

    _change_user(lambda session: enable_user(session, name), data_dir)
    typer.echo(f"enabled user {name}")


@user_app.command("rotate")
def user_rotate(name: str, data_dir: DataDir = None) -> None:
    """A new token for a user, alone on the last line (shown once); the old one stops working."""
    from store.users import rotate_token

    _, token = _change_user(lambda session: rotate_token(session, name), data_dir)
    typer.echo(f"rotated the token of {name}; the old one no longer works")
    typer.echo(token)


def _change_user(change: Callable[[Session], T], data_dir: Path | None) -> T:
    from store.db import session_scope
    from store.users import UnknownUserError

    try:
        with session_scope(_prepared_engine(_settings(data_dir))) as session:
            return change(session)
    except UnknownUserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@store_app.command("rebuild")
def store_rebuild(data_dir: DataDir = None) -> None:
    """Rebuild the case/task read model from Temporal and the archive (nothing is deleted)."""
    count = asyncio.run(_rebuild(_settings(data_dir)))
    typer.echo(f"rebuilt the read model from {count} cases")


async def _rebuild(settings: Settings) -> int:
    """Re-project every case Temporal lists or the archive holds, each replacing its rows.

    Cases closed past Temporal's retention are only in the archive: their final state is
    rebuilt by replaying the archived history. A case in neither is left as it is.
    """
    from sqlmodel import Session

    from audit.sources import current_state, replayed_state
    from store.archive import archived_case_ids
    from store.read_model import replace_case
    from workflows.client import all_case_ids
    from workflows.worker import build_worker

    engine = _prepared_engine(settings)
    client = await _connect_with_retry(settings, attempts=1)
    with Session(engine) as session:
        archived = archived_case_ids(session)
    live = await all_case_ids(client, settings.task_queue)
    case_ids = list(dict.fromkeys([*live, *archived]))
    # Queries need a worker; run one here so a rebuild works with no worker running.
    async with build_worker(client, settings.task_queue, engine, settings):
        snapshots = [await current_state(client, engine, cid) for cid in live]
    # Archived cases Temporal no longer lists for this queue: from their history.
    snapshots += [await replayed_state(client, engine, cid) for cid in case_ids[len(live) :]]
    for snapshot in snapshots:
        replace_case(engine, snapshot)
    return len(snapshots)


@store_app.command("reconcile")
def store_reconcile(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only compare: report differences, repair none")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Compare open and recently closed cases with Temporal; replace what differs with
    Temporal's state (each repair recorded in `reconciliations`). Prints what it found."""
    report = asyncio.run(_reconcile(_settings(data_dir), repair=not dry_run))
    for line in report.lines():
        typer.echo(line)


async def _reconcile(settings: Settings, repair: bool):
    from reconcile.reconciler import reconcile
    from workflows.worker import build_worker

    engine = _prepared_engine(settings)
    client = await _connect_with_retry(settings, attempts=1)
    closed_within = timedelta(hours=settings.reconcile_closed_within_hours)
    # Queries need a worker; run one here so a pass works with no worker running.
    async with build_worker(client, settings.task_queue, engine, settings):
        return await reconcile(
            client, engine, settings.task_queue, repair=repair, closed_within=closed_within
        )


@sop_app.command("publish")
def sop_publish(
    path: Path,
    by: Annotated[str, typer.Option(help="who publishes (recorded)")] = "sop_owner",
    hypercare_days: Annotated[
        int | None, typer.Option(help="open a hypercare window of this many days (1-90)")
    ] = None,
    warn_factor: Annotated[
        float | None,
        typer.Option(help="in hypercare, warn after this share of the usual time, in (0, 1]"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Validate and publish a template version file; new cases pin it from now on.

    With --hypercare-days and --warn-factor, a hypercare window opens: its steps warn
    earlier, and the publisher (--by, a user with an email address) hears of every breach
    and gets a daily digest against the previous version."""
    from sop_templates.registry import (
        HypercareOwnerError,
        SopConflictError,
        load_document,
        publish_document,
    )
    from sop_templates.validation import InvalidTemplateError
    from store.db import session_scope

    hypercare = _hypercare_terms(hypercare_days, warn_factor)
    engine = _prepared_engine(_settings(data_dir))
    try:
        with session_scope(engine) as session:
            row = publish_document(session, load_document(path), actor=by, hypercare=hypercare)
    except InvalidTemplateError as exc:
        _sop_refused(*(str(error) for error in exc.errors))
    except (SopConflictError, HypercareOwnerError) as exc:
        _sop_refused(f"error: {exc}")
    window = f", hypercare until {row.hypercare_until:%Y-%m-%d %H:%M} UTC" if hypercare else ""
    typer.echo(f"published {row.name} v{row.version} ({row.content_hash}){window}")


def _hypercare_terms(days: int | None, warn_factor: float | None) -> HypercareTerms | None:
    """The window the options ask for (none without either); a bad value names its option."""
    from pydantic import ValidationError

    if days is None and warn_factor is None:
        return None
    try:
        return HypercareTerms.model_validate({"days": days, "warn_factor": warn_factor})
    except ValidationError as exc:
        options = {"days": "--hypercare-days", "warn_factor": "--warn-factor"}
        _sop_refused(*(f"error: {options[str(e['loc'][0])]}: {e['msg']}" for e in exc.errors()))


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
