"""`casebook report daily|weekly|monthly --vendor V`: a vendor's review in the terminal."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from cli.main import app as cli
from settings import get_settings
from tests.test_facts import _work_week


@pytest.fixture
def runner(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("CASEBOOK_DATABASE_URL", sqlite_engine.url.render_as_string())
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_weekly_review_of_one_vendor(runner: CliRunner, sqlite_engine: Engine) -> None:
    vendor, other = (f"v-{uuid.uuid4().hex[:6]}" for _ in range(2))
    _work_week(sqlite_engine, vendor)
    _work_week(sqlite_engine, other)
    args = ["report", "weekly", "--vendor", vendor, "--at", "2026-11-25"]
    text = runner.invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert f"Weekly review of {vendor}: 2026-W48" in text.output
    sla = text.output.split("SLA attainment\n")[1].splitlines()
    assert sla[2].split()[1:] == ["6", "5", "1", "0.8333"]  # one vendor: not 12 fell due

    as_json = json.loads(runner.invoke(cli, [*args, "--format", "json"]).output)
    titles = [s["title"] for s in as_json["sections"]]
    assert "Throughput per agent" in titles and "Disputes by reason code" in titles
    disputes = next(s for s in as_json["sections"] if s["report"] == "disputes")
    assert disputes["rows"][0]["credited_amount"] == "150.00"

    out = runner.invoke(cli, [*args, "--format", "csv"]).output
    block = out.split("# Throughput per agent\n")[1].split("\n\n")[0]
    assert next(csv.DictReader(io.StringIO(block)))["completed"] == "6"


def test_a_bad_period_or_format_is_refused(runner: CliRunner) -> None:
    bad_day = runner.invoke(cli, ["report", "daily", "--vendor", "v", "--at", "soon"])
    assert bad_day.exit_code != 0 and "at" in bad_day.output
    bad_tz = runner.invoke(cli, ["report", "monthly", "--vendor", "v", "--tz", "Nowhere/City"])
    assert bad_tz.exit_code != 0 and "Nowhere/City" in bad_tz.output
    bad_format = runner.invoke(cli, ["report", "weekly", "--vendor", "v", "--format", "xls"])
    assert bad_format.exit_code != 0 and "xls" in bad_format.output
