"""Secrets never printed: settings hold them as secrets; `/healthz` names what is down without
the exception's text (which carries hosts, users, sometimes passwords)."""

from __future__ import annotations

import logging

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from settings import Settings
from store.db import make_engine

PASSWORD = "hunter2-Zq9"
# Nothing listens on port 1: connecting fails at once with a message naming host and port.
DOWN_DATABASE = f"postgresql+psycopg://casebook:{PASSWORD}@127.0.0.1:1/casebook"


def test_settings_never_print_their_secrets() -> None:
    settings = Settings(smtp_password=PASSWORD, billing_token=PASSWORD, database_url=DOWN_DATABASE)
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert PASSWORD not in shown
    assert settings.smtp_password.get_secret_value() == PASSWORD
    assert settings.billing_token.get_secret_value() == PASSWORD
    assert settings.resolved_database_url() == DOWN_DATABASE  # what the engine needs


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOOK_BILLING_TOKEN", PASSWORD)
    assert Settings().billing_token.get_secret_value() == PASSWORD


@pytest.mark.asyncio(loop_scope="session")
async def test_healthz_names_the_database_down_without_exception_text(
    dev_server: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(DOWN_DATABASE)
    app = create_app(
        Settings(database_url=DOWN_DATABASE), engine=engine, temporal=dev_server.client
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://casebook") as http:
            with caplog.at_level(logging.WARNING):
                response = await http.get("/healthz")
    engine.dispose()
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "database": "down", "temporal": "ok"}
    for secret in (PASSWORD, "127.0.0.1", "casebook", "Error"):
        assert secret not in response.text
    # The operator still learns why: the exception is logged server-side.
    assert any("database" in r.getMessage() and r.exc_info for r in caplog.records)
