"""Token lifecycle: `casebook user list | disable | rotate`, expiry, `last_used_at`; a disabled,
expired or rotated-away token answers 401 saying why."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from cli.main import app as cli
from domain.case_models import Role
from settings import get_settings
from store.db import session_scope
from store.tables import UserRow
from store.users import aware, create_user
from tests.harness import Api

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def casebook(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The CLI on the API's own database."""
    url = api.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("CASEBOOK_DATABASE_URL", url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def _run(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _listed(runner: CliRunner, name: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in _run(runner, "user", "list", "--json").splitlines()]
    [mine] = [line for line in lines if line["name"] == name]
    return mine


async def _status(api: Api, token: str) -> tuple[int, str]:
    response = await api.http.get("/cases", headers=_bearer(token))
    return response.status_code, "" if response.is_success else response.json()["message"]


async def test_a_disabled_user_is_refused_until_enabled(api: Api, casebook: CliRunner) -> None:
    name = f"lee-{uuid.uuid4().hex[:6]}"
    token = _run(casebook, "user", "add", name, "--role", "lead").splitlines()[-1]
    assert (await _status(api, token))[0] == 200
    assert _listed(casebook, name)["status"] == "active"

    _run(casebook, "user", "disable", name)
    status, message = await _status(api, token)
    assert status == 401 and "disabled" in message
    assert _listed(casebook, name)["status"] == "disabled"

    _run(casebook, "user", "enable", name)
    assert (await _status(api, token))[0] == 200


async def test_rotation_kills_the_old_token_and_the_new_one_works(
    api: Api, casebook: CliRunner
) -> None:
    name = f"ana-{uuid.uuid4().hex[:6]}"
    old = _run(casebook, "user", "add", name, "--role", "lead").splitlines()[-1]
    new = _run(casebook, "user", "rotate", name).splitlines()[-1]
    assert new != old and new.startswith("cb_")
    status, message = await _status(api, old)
    assert status == 401 and "invalid or revoked" in message
    assert (await _status(api, new))[0] == 200
    missing = casebook.invoke(cli, ["user", "rotate", "nobody-" + uuid.uuid4().hex[:6]])
    assert missing.exit_code == 1 and "no user named" in missing.output


async def test_an_expired_token_is_refused_saying_so(api: Api) -> None:
    with session_scope(api.engine) as session:
        user, token = create_user(
            session,
            name=f"old-{uuid.uuid4().hex[:6]}",
            role=Role.LEAD,
            vendor=None,
            queues=[],
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
        )
    status, message = await _status(api, token)
    assert status == 401 and "expired" in message and user.name in message


async def test_expiry_at_user_add(api: Api, casebook: CliRunner) -> None:
    name = f"exp-{uuid.uuid4().hex[:6]}"
    _run(casebook, "user", "add", name, "--role", "lead", "--expires-in", "90d")
    expires = datetime.fromisoformat(_listed(casebook, name)["expires_at"])
    assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)

    dated = f"exp-{uuid.uuid4().hex[:6]}"
    _run(casebook, "user", "add", dated, "--role", "lead", "--expires-at", "2099-03-31")
    assert _listed(casebook, dated)["expires_at"] == "2099-03-31T00:00:00+00:00"

    for bad in (["--expires-in", "90 days"], ["--expires-at", "2001-01-01"]):
        refused = casebook.invoke(
            cli, ["user", "add", f"x-{uuid.uuid4().hex[:6]}", "--role", "lead", *bad]
        )
        assert refused.exit_code == 2 and bad[0] in refused.output, refused.output
    naive = casebook.invoke(
        cli, ["user", "add", "naive", "--role", "lead", "--expires-at", "2099-01-01T10:00:00"]
    )
    assert naive.exit_code == 2 and "time zone" in naive.output


async def test_last_use_is_recorded_at_most_once_a_minute(api: Api) -> None:
    name = f"use-{uuid.uuid4().hex[:6]}"
    with session_scope(api.engine) as session:
        _, token = create_user(session, name=name, role=Role.LEAD, vendor=None, queues=[])

    def last_used() -> datetime | None:
        with Session(api.engine) as session:
            user = session.exec(select(UserRow).where(UserRow.name == name)).one()
            return aware(user.last_used_at) if user.last_used_at else None

    assert last_used() is None
    before = datetime.now(UTC)
    assert (await _status(api, token))[0] == 200
    first = last_used()
    assert first is not None and first >= before - timedelta(seconds=1)
    assert (await _status(api, token))[0] == 200
    assert last_used() == first  # a hot token does not write on every request
