"""Intake checks a new case with billing over HTTP, and takes the customer's master data from
it: customer and invoices must be billing's (422 naming the field and value, nothing
started), region, currency, contact and language come from billing when left out, and with
billing down the case opens and checks as its first step."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from api.services.intake import INTAKE_TIMEOUT_S
from escalations.calendars import get_calendar
from escalations.sla_clock import parse_budget
from tests.billing_harness import BillingService
from tests.harness import Api, eventually, running_api, terminate_cases

pytestmark = pytest.mark.asyncio(loop_scope="session")
TODAY = date.today()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[BillingService]:
    with BillingService(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'billing.db'}") as billing:
        yield billing


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(
    dev_server: WorkflowEnvironment, engine: Engine, ledger: BillingService
) -> AsyncIterator[Api]:
    async with running_api(
        dev_server.client, engine, billing_url=ledger.url, intake_check="billing"
    ) as api:
        yield api


def _customer(ledger: BillingService, currency: str = "EUR", **master_data: str) -> str:
    customer = f"K-{uuid.uuid4().hex[:6]}"
    ledger.put_customer(customer, currency=currency, **master_data)
    return customer


def _invoice(ledger: BillingService, customer: str, days_past_due: int = 0) -> str:
    invoice = f"{customer}-I{uuid.uuid4().hex[:4]}"
    due = TODAY - timedelta(days=days_past_due)
    ledger.put_invoice(invoice, customer, "500.00", due, due - timedelta(days=30))
    return invoice


def _dispute(customer: str, invoices: list[str], **changes: Any) -> dict[str, Any]:
    body = {
        "type": "dispute",
        "customer_id": customer,
        "invoice_ids": invoices,
        "amount": "100.00",
        "reason_code": "pricing",
        **changes,
    }
    return {k: v for k, v in body.items() if v is not None}


async def _cases_of(api: Api, headers: dict[str, str], customer: str) -> list[dict[str, Any]]:
    response = await api.http.get("/cases", params={"customer_id": customer}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("problem", "field"),
    [
        ("another customer's invoice", "invoice_ids[1]"),
        ("another currency", "invoice_ids[0]"),
        ("an unknown invoice", "invoice_ids[1]"),
        ("an unknown customer", "customer_id"),
        ("another region than billing's", "region"),
    ],
)
async def test_intake_refuses_what_billing_contradicts(
    api: Api, ledger: BillingService, problem: str, field: str
) -> None:
    lead = api.user("lead")
    mine = _customer(ledger, "EUR", region="FR")
    own = _invoice(ledger, mine)
    other = _invoice(ledger, _customer(ledger, "SGD", region="SG"))
    customer, invoices, changes = mine, [own], {}
    if problem == "another customer's invoice":
        invoices, value = [own, other], other
    elif problem == "another currency":
        changes, value = {"currency": "USD"}, own
    elif problem == "an unknown invoice":
        invoices, value = [own, "INV-NOWHERE"], "INV-NOWHERE"
    elif problem == "an unknown customer":
        customer = value = f"K-UNKNOWN-{uuid.uuid4().hex[:4]}"
    else:
        changes, value = {"region": "SG"}, "SG"
    response = await api.http.post(
        "/cases", json=_dispute(customer, invoices, **changes), headers=lead
    )
    assert response.status_code == 422, response.text
    error = response.json()
    assert f"{field}: {value!r}" in error["message"]
    assert {"field": field, "value": value} in [
        {"field": f["field"], "value": f["value"]} for f in error["details"]["fields"]
    ]
    assert await _cases_of(api, lead, customer) == []  # nothing started


async def test_master_data_fills_what_the_request_leaves_out(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    lead = api.user("lead")
    customer = _customer(ledger, "SGD", region="SG", time_zone="Asia/Singapore", language="en")
    invoice = _invoice(ledger, customer)
    response = await api.http.post("/cases", json=_dispute(customer, [invoice]), headers=lead)
    assert response.status_code == 201, response.text
    case = response.json()
    try:
        assert (case["region"], case["currency"]) == ("SG", "SGD")
        assert case["data"] == {
            "contact": f"ap@{customer.lower()}.example",
            "language": "en",
            "time_zone": "Asia/Singapore",
        }
        # What the request gives is kept: its own contact, billing's region restated.
        given = _dispute(customer, [invoice], region="SG", data={"contact": "x@y.example"})
        again = await api.http.post("/cases", json=given, headers=lead)
        assert again.status_code == 201, again.text
        assert again.json()["data"]["contact"] == "x@y.example"
    finally:
        ids = [case["id"]] + ([again.json()["id"]] if "again" in locals() else [])
        await terminate_cases(dev_server.client, ids)


async def test_without_region_in_billing_or_request_intake_says_so(
    api: Api, ledger: BillingService
) -> None:
    lead = api.user("lead")
    customer = _customer(ledger)  # no region in billing
    invoice = _invoice(ledger, customer)
    response = await api.http.post("/cases", json=_dispute(customer, [invoice]), headers=lead)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("region: billing has no region")


async def _task_of(api: Api, headers: dict[str, str], case_id: str, step: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        return (await api.http.get(f"/cases/{case_id}", headers=headers)).json()

    case = await eventually(
        probe, lambda c: any(t["step"] == step for t in c.get("tasks", [])), timeout=30
    )
    return next(t for t in case["tasks"] if t["step"] == step)


async def test_with_billing_down_the_case_opens_and_checks_first(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    lead = api.user("lead")
    customer = _customer(ledger, "EUR", region="FR")
    good = _invoice(ledger, customer)
    foreign = _invoice(ledger, _customer(ledger, "EUR", region="FR"))
    ledger.stop()
    try:
        opened = []
        for invoices in ([good], [good, foreign]):
            body = _dispute(customer, invoices, region="FR", currency="EUR")
            response = await api.http.post("/cases", json=body, headers=lead)
            assert response.status_code == 201, response.text  # nothing refused
            opened.append(response.json())
            assert opened[-1]["current_step"] == "intake_check"
        without_region = await api.http.post(
            "/cases", json=_dispute(customer, [good]), headers=lead
        )
        assert without_region.status_code == 503, without_region.text
        assert without_region.json()["message"].startswith("region, currency: billing did not")
    finally:
        ledger.start()
    try:
        # Billing back: the check passes into the SOP's start, or a person gets the mismatch.
        triage = await _task_of(api, lead, opened[0]["id"], "triage")
        assert triage["status"] == "open"
        refused = await _task_of(api, lead, opened[1]["id"], "intake_check")
        assert refused["queue"] == "o2c-leads"
        assert refused["data"]["billing_error"]["code"] == "case_mismatch"
        assert f"invoice_ids[1]: {foreign!r} is an invoice of" in refused["title"]
        assert refused["allowed_outcomes"] == ["retry", "skip"]
    finally:
        await terminate_cases(dev_server.client, [c["id"] for c in opened])


async def test_an_overdue_scan_runs_each_customer_on_its_own_calendar(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    lead = api.user("lead")
    regions = {
        "SG": _customer(ledger, "SGD", region="SG", time_zone="Asia/Singapore", language="en"),
        "FR": _customer(ledger, "EUR", region="FR", time_zone="Europe/Paris", language="fr"),
        "US": _customer(ledger, "USD", region="US", time_zone="America/New_York"),
    }
    for customer in regions.values():
        _invoice(ledger, customer, days_past_due=20)
    unplaced = _customer(ledger)  # billing knows no region: the scan's `region` applies
    _invoice(ledger, unplaced, days_past_due=20)
    response = await api.http.post(
        "/collections/overdue-scan", json={"region": "24x7"}, headers=lead
    )
    assert response.status_code == 200, response.text
    lines = {line["customer_id"]: line for line in response.json()["lines"]}
    case_ids = [lines[c]["case_id"] for c in [*regions.values(), unplaced]]
    try:
        dues = {}
        for region, customer in [*regions.items(), ("24x7", unplaced)]:
            assert lines[customer]["status"] == "opened", lines[customer]
            case_id = lines[customer]["case_id"]
            case = (await api.http.get(f"/cases/{case_id}", headers=lead)).json()
            assert case["region"] == region
            task = await _task_of(api, lead, case_id, "contact_customer")
            created = datetime.fromisoformat(task["created_at"])
            calendar = get_calendar(region)
            day = parse_budget("1d").as_timedelta(calendar)
            expected = calendar.add_business_time(created, day)
            assert datetime.fromisoformat(task["sla_due"]) == expected, (region, task)
            dues[region] = expected - created
        # One business day is a different span of wall time on each calendar (hours, zones,
        # weekends): each case counted on its own.
        assert dues["24x7"] == timedelta(days=1)
        assert len(set(dues.values())) > 1
    finally:
        await terminate_cases(dev_server.client, case_ids)
    # Without a fallback, a customer billing has no region for is skipped, saying why.
    lonely = _customer(ledger)
    _invoice(ledger, lonely, days_past_due=20)
    response = await api.http.post("/collections/overdue-scan", json={}, headers=lead)
    line = next(x for x in response.json()["lines"] if x["customer_id"] == lonely)
    assert line["status"] == "skipped" and "no region" in line["reason"]


async def test_a_credit_review_sweep_runs_each_customer_on_its_own_calendar(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    lead = api.user("lead")
    customer = f"K-{uuid.uuid4().hex[:6]}"
    ledger.put_customer(customer, limit="1.00", currency="JPY", region="JP", language="ja")
    _invoice(ledger, customer)  # 500.00 owed: above its limit
    body = {"region": "24x7", "reason": "limit_breach", "period": uuid.uuid4().hex[:8]}
    response = await api.http.post("/credit-reviews/sweep", json=body, headers=lead)
    assert response.status_code == 200, response.text
    line = next(x for x in response.json()["lines"] if x["customer_id"] == customer)
    assert line["status"] == "opened", line
    try:
        case = (await api.http.get(f"/cases/{line['case_id']}", headers=lead)).json()
        assert (case["region"], case["currency"]) == ("JP", "JPY")
        assert case["data"]["language"] == "ja"
    finally:
        await terminate_cases(dev_server.client, [line["case_id"]])


async def test_a_billing_that_does_not_answer_in_time_refuses_nothing(
    dev_server: WorkflowEnvironment, engine: Engine
) -> None:
    # A billing that takes connections and never answers: a hung gateway.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        async with running_api(
            dev_server.client, engine, billing_url=url, intake_check="billing"
        ) as api:
            lead = api.user("lead")
            body = _dispute("K-HUNG", ["K-HUNG-1"], region="FR", currency="EUR")
            started = time.monotonic()
            response = await api.http.post("/cases", json=body, headers=lead)
            assert response.status_code == 201, response.text
            assert time.monotonic() - started < INTAKE_TIMEOUT_S + 3
            assert response.json()["current_step"] == "intake_check"
            await terminate_cases(dev_server.client, [response.json()["id"]])
