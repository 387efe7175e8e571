"""The KPIs in SQL give the numbers their row-by-row definition gives (tests/kpi_reference.py),
on SQLite and PostgreSQL, over a few hundred made-up facts that hit the edges: instants
with microseconds and on the period's bounds, tasks never claimed, pauses longer than the
handling, facts without a vendor, regions with and without a calendar, every group_by.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from escalations.calendars import get_calendar
from reports import kpis
from reports.kpis import ReportFilter, aged_since, business_days
from store.facts import with_durations
from store.tables import FactRow
from tests.kpi_reference import reference

START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
WEEK = timedelta(days=7)
REGIONS = ["24x7", "FR", "SG", "nowhere"]  # "nowhere": no calendar, calendar days
QUEUES = ["disputes-tier1", "collections-tier1", "credit-review"]


def _instant(rng: random.Random, base: datetime, spread: timedelta) -> datetime:
    if rng.random() < 0.05:  # on a bound of the week or of a day
        return START + WEEK * rng.choice([0, 1]) + timedelta(days=rng.randint(0, 2))
    return base + timedelta(microseconds=rng.randint(0, spread // timedelta(microseconds=1)))


def _fact(rng: random.Random, n: int, kind: str, vendors: list[str | None]) -> dict[str, Any]:
    opened = _instant(rng, START - timedelta(days=3), timedelta(days=12))
    claimed = opened + timedelta(seconds=rng.uniform(1, 30_000)) if rng.random() < 0.8 else None
    completed = None
    if claimed is not None and rng.random() < 0.75:
        completed = claimed + timedelta(seconds=rng.uniform(1, 90_000))
    due = opened + timedelta(hours=rng.choice([4, 8, 48])) if rng.random() < 0.85 else None
    breached = due if due is not None and rng.random() < 0.3 else None
    return {
        "id": f"{kind}:{vendors[0]}-{n}",
        "kind": kind,
        "subject_id": f"S-{n}",
        "case_id": f"C-{n // 3}",
        "case_type": rng.choice(["dispute", "collection", "credit_review"]),
        "vendor": rng.choice(vendors),
        "region": rng.choice(REGIONS),
        "queue": rng.choice(QUEUES),
        "step": rng.choice(["triage", "investigate", "review"]),
        "sop_name": "dispute",
        "sop_version": rng.choice([1, 2]),
        "assignee": rng.choice(["ana", "bob", "cy", "dee", "", None]),
        "reason_code": rng.choice(["pricing", "tax", None]),
        "status": "done" if completed else rng.choice(["open", "claimed", "paused"]),
        "outcome": rng.choice(["paid", "credited", "written_off", None]),
        "opened_at": opened,
        "first_touch_at": claimed - timedelta(seconds=rng.uniform(0, 60)) if claimed else None,
        "claimed_at": claimed,
        "completed_at": completed,
        "sla_due": due,
        "sla_warning_at": None,
        "sla_breached": breached is not None or rng.random() < 0.05,
        "breached_at": breached,
        "paused_seconds": rng.choice([0.0, 0.0, rng.uniform(0, 50_000)]),
        "paused_business_seconds": 0.0,
        "reassignments": rng.choice([0, 0, 0, 1, 2]),
        "loop_backs": rng.choice([0, 0, 0, 1]),
        "reopens": rng.choice([0, 0, 0, 0, 1]),
        "billing_refusals": rng.choice([0, 0, 0, 0, 1]),
        "escalations": rng.choice([0, 0, 1]),
        "level": rng.choice([0, 0, 1]),
        "escalation_kind": rng.choice(["sla_breach", "manual", "approval", None]),
        "currency": rng.choice(["EUR", "USD"]),
        "amount": f"{rng.randint(1, 99_999)}.{rng.randint(0, 99):02d}",
        "amount_credited": rng.choice(["0", "0", f"{rng.randint(1, 500)}.5"]),
        "events_seen": 0,
    }


@pytest.fixture(scope="module")
def seeded(engine: Engine) -> dict[str, Any]:
    rng = random.Random(1414)
    mine = f"v-{uuid.uuid4().hex[:6]}"
    vendors: list[str | None] = [mine, f"{mine}-b", None]
    # Stored as the projection stores them: with their durations (store/facts.py).
    rows = [
        with_durations(_fact(rng, n, kind, vendors))
        for n in range(500)
        for kind in [rng.choice(["task", "task", "case", "escalation"])]
    ]
    with engine.begin() as connection:
        connection.execute(FactRow.__table__.insert(), rows)
    return {"vendor": mine, "vendors": vendors}


ASKS = {
    "week": {},
    "two days, as of the second": {
        "end": START + timedelta(days=2, hours=7),
        "as_of": START + timedelta(days=1, hours=5),
    },
}
# A dimension with None and "" among its values, and the calendar cuts that fit a week.
GROUP_BYS = (None, "agent", "day", "week")


@pytest.mark.parametrize("name", list(kpis.KPIS))
def test_every_kpi_equals_its_row_by_row_definition(
    engine: Engine, seeded: dict[str, Any], name: str
) -> None:
    base = ReportFilter(start=START, end=START + WEEK, vendors=seeded["vendors"])
    for ask, changes in ASKS.items():
        for group_by in GROUP_BYS:
            f = replace(base, group_by=group_by, **changes)
            assert kpis.run(engine, name, f) == reference(engine, name, f), (ask, group_by)
    one = replace(base, vendor=seeded["vendor"], queue="disputes-tier1", timezone="Asia/Singapore")
    for group_by in (None, "day", "step"):
        f = replace(one, group_by=group_by)
        assert kpis.run(engine, name, f) == reference(engine, name, f), group_by


@pytest.mark.parametrize("region", ["FR", "SG", "24x7", "nowhere"])
def test_the_aging_bound_is_the_latest_opening_that_old(region: str) -> None:
    at = datetime(2026, 12, 28, 10, 30, 0, 1, tzinfo=UTC)  # after Christmas: holidays
    for days in (1, 3, 7):
        bound = aged_since(region, at, days)
        assert business_days(region, bound, at) >= days
        assert business_days(region, bound + timedelta(microseconds=1), at) < days


def test_business_start_walks_back_over_closed_days() -> None:
    fr = get_calendar("FR")
    friday_close = datetime(2026, 11, 27, 18, 0, tzinfo=fr.zone)
    monday_ten = datetime(2026, 11, 30, 10, 0, tzinfo=fr.zone)
    # One working hour on Monday morning, then back over the weekend to Friday 17:00.
    start = fr.business_start(monday_ten, timedelta(hours=2))
    assert start == (friday_close - timedelta(hours=1)).astimezone(UTC)


def test_the_reports_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import reports as bench_reports

    assert bench_reports.main(["--facts", "300", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert all(f" {name} " in out for name in kpis.KPIS)  # every report, escalations too
    assert "reports within the target at 300 facts" in out
