"""GET /reports/...: JSON and CSV, for leads (their vendor only), admins and auditors."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import pytest

from domain.case_models import Role
from tests.harness import Api
from tests.test_facts import MONDAY, _work_week

pytestmark = pytest.mark.asyncio(loop_scope="session")

WEEK = {"period": "week", "at": "2026-11-23"}


@pytest.fixture(scope="module")
def vendors(api: Api) -> tuple[str, str]:
    """Two vendors' weeks of work: the first's as in test_facts, the second's the same."""
    mine, other = (f"v-{uuid.uuid4().hex[:6]}" for _ in range(2))
    _work_week(api.engine, mine)
    _work_week(api.engine, other)
    return mine, other


async def _get(api: Api, headers: dict[str, str], path: str, **params: Any) -> Any:
    return await api.http.get(path, params={**WEEK, **params}, headers=headers)


async def test_a_lead_gets_only_its_vendors_numbers(api: Api, vendors: tuple[str, str]) -> None:
    mine, other = vendors
    lead = api.user(Role.LEAD, vendor=mine)
    response = await _get(api, lead, "/reports/sla")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"][0]["fell_due"] == 6  # one vendor's week, not two
    assert body["period"]["start"] == MONDAY.replace(hour=0).isoformat()

    refused = await _get(api, lead, "/reports/sla", vendor=other)
    assert refused.status_code == 403 and other in refused.json()["message"]

    auditor = api.user(Role.AUDITOR)
    both = (await _get(api, auditor, "/reports/sla", case_type="dispute")).json()
    theirs = (await _get(api, auditor, "/reports/sla", vendor=other)).json()
    assert theirs["rows"][0]["fell_due"] == 6
    assert both["rows"][0]["fell_due"] >= 12


async def test_agents_and_sop_owners_may_not_read_reports(
    api: Api, vendors: tuple[str, str]
) -> None:
    for role in (Role.AGENT, Role.SOP_OWNER):
        response = await _get(api, api.user(role, vendor=vendors[0]), "/reports/sla")
        assert response.status_code == 403, response.text


async def test_csv_with_accept_text_csv(api: Api, vendors: tuple[str, str]) -> None:
    lead = {**api.user(Role.LEAD, vendor=vendors[0]), "Accept": "text/csv"}
    response = await _get(api, lead, "/reports/throughput")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows == [
        {
            "queue": "disputes-tier1",
            "agent": "ana",
            "completed": "6",
            "queue_median": "6",
            "under_threshold": "False",
        }
    ]
    grouped = await _get(api, lead, "/reports/sla", group_by="step")
    lines = grouped.text.splitlines()
    assert lines[0] == "step,fell_due,met,breached,attainment"
    assert "triage,3,2,1,0.6667" in lines


async def test_bad_parameters_are_422_naming_them(api: Api, vendors: tuple[str, str]) -> None:
    auditor = api.user(Role.AUDITOR)
    unknown = await _get(api, auditor, "/reports/nps")
    assert unknown.status_code == 422 and "sla" in unknown.text
    zone = await _get(api, auditor, "/reports/sla", tz="Mars/Olympus")
    assert zone.status_code == 422 and "tz" in zone.json()["message"]
    day = await _get(api, auditor, "/reports/sla", at="yesterday")
    assert day.status_code == 422 and "at" in zone.json()["message"] + day.json()["message"]
    listed = await api.http.get("/reports", headers=auditor)
    assert {r["name"] for r in listed.json()} >= {"sla", "backlog", "disputes"}


async def test_live_gauges_on_metrics(api: Api, vendors: tuple[str, str]) -> None:
    auditor = api.user(Role.AUDITOR)
    text = (await api.http.get("/metrics", headers=auditor)).text
    gauges = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("casebook_") and not line.startswith("casebook_http")
    }
    # Each vendor's week leaves C's second investigation open and nothing in warning.
    assert gauges['casebook_tasks_open{queue="disputes-tier1",state="open"}'] >= 2
    assert gauges["casebook_sla_breaches_last_hour"] == 0  # B's breach was on MONDAY
    assert gauges["casebook_oldest_open_task_age_seconds"] > 24 * 3600
    assert "casebook_tasks_in_warning" in gauges


async def test_the_ledger_report_is_for_callers_who_see_every_vendor(
    api: Api, vendors: tuple[str, str]
) -> None:
    auditor = api.user(Role.AUDITOR)
    response = await api.http.get(
        "/reports/ledger", params={"currency": "EUR", "period": "quarter"}, headers=auditor
    )
    assert response.status_code == 200, response.text
    assert {"dso", "cei", "average_days_delinquent"} <= set(response.json())
    lead = api.user(Role.LEAD, vendor=vendors[0])
    refused = await api.http.get("/reports/ledger", params={"currency": "EUR"}, headers=lead)
    assert refused.status_code == 403
    bad = await api.http.get("/reports/ledger", params={"currency": "euro"}, headers=auditor)
    assert bad.status_code == 422
