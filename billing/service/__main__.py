"""`python -m billing.service`: run the built-in billing service, load a CSV, print the spec."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
import yaml

from billing.service.app import create_app
from billing.service.loading import LoadError, create_schema, load_csv, seed_demo
from store.db import make_engine

cli = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
DbOption = Annotated[str, typer.Option("--db", envvar="BILLING_DATABASE_URL")]
DEFAULT_DB = "sqlite:///.casebook/billing.db"


@cli.command()
def serve(
    db: DbOption = DEFAULT_DB,
    host: str = "127.0.0.1",
    port: int = 8001,
    seed: Annotated[bool, typer.Option(help="load the demo book into an empty ledger")] = True,
    csv: Annotated[Path | None, typer.Option(help="load this CSV before serving")] = None,
    token: Annotated[
        str, typer.Option(envvar="BILLING_TOKEN", help="require this bearer token")
    ] = "",
    insecure_no_token: Annotated[
        bool,
        typer.Option(
            "--insecure-no-token",
            help="dev runs only: serve without a token, so anyone who reaches the port can "
            "issue credit memos",
        ),
    ] = False,
) -> None:
    """Serve the billing REST contract on HOST:PORT (callers need the bearer token)."""
    if not token and not insecure_no_token:
        typer.echo(
            "billing: refusing to start without a token: anyone reaching this port could "
            "issue credit memos and change credit limits. Set BILLING_TOKEN (or --token), and "
            "give Casebook the same value as CASEBOOK_BILLING_TOKEN; for a throwaway dev run "
            "only, pass --insecure-no-token.",
            err=True,
        )
        raise typer.Exit(2)
    if not token:
        typer.echo(f"billing: serving on {host}:{port} without a token (dev run)", err=True)
    engine = make_engine(db)
    create_schema(engine)
    if csv is not None:
        load(csv, db)
    if seed and seed_demo(engine, datetime.now(UTC).date()):
        typer.echo("billing: demo customers and invoices loaded")
    app = create_app(engine, token, insecure_no_token=insecure_no_token)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@cli.command()
def load(path: Path, db: DbOption = DEFAULT_DB) -> None:
    """Load customers and invoices from a CSV (all rows or none)."""
    engine = make_engine(db)
    create_schema(engine)
    try:
        loaded = load_csv(engine, path)
    except LoadError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(2) from None
    typer.echo(f"loaded {loaded.customers} customers, {loaded.invoices} invoices")


@cli.command()
def openapi() -> None:
    """Print the contract as OpenAPI YAML (docs/billing-openapi.yaml is this output)."""
    # Only the spec is read: the app never serves, so it needs no token.
    spec = create_app(make_engine("sqlite://"), "", insecure_no_token=True).openapi()
    typer.echo(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), nl=False)


if __name__ == "__main__":
    cli()
