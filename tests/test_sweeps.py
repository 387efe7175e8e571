"""Sweeps over billing open one case per customer and purpose, never two, however often and
however concurrently they run: the overdue scan (collections) and credit review sweeps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from billing.http_adapter import HttpBillingSystem
from tests.billing_harness import BillingService
from tests.harness import Api, running_api, terminate_cases

pytestmark = pytest.mark.asyncio(loop_scope="session")
TODAY = date.today()
SCAN = "/collections/overdue-scan"


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[BillingService]:
    """A ledger per database run: sweeps see every customer in it."""
    with BillingService(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'billing.db'}") as billing:
        yield billing


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(
    dev_server: WorkflowEnvironment, engine: Engine, ledger: BillingService
) -> AsyncIterator[Api]:
    async with running_api(dev_server.client, engine, billing_url=ledger.url) as api:
        yield api


def _debtor(ledger: BillingService, *past_due: int) -> tuple[str, list[str]]:
    """A customer with one 100.00 invoice per entry, that many days past due."""
    customer = f"S-{uuid.uuid4().hex[:6]}"
    ledger.put_customer(customer)
    invoices = []
    for n, days in enumerate(past_due):
        due = TODAY - timedelta(days=days)
        ledger.put_invoice(f"{customer}-{n}", customer, "100.00", due, due - timedelta(days=30))
        invoices.append(f"{customer}-{n}")
    return customer, invoices


async def _scan(api: Api, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await api.http.post(SCAN, json={"region": "24x7", **body}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _opened(sweep: dict[str, Any]) -> list[str]:
    return [line["case_id"] for line in sweep["lines"] if line["status"] == "opened"]


async def _collections(api: Api, headers: dict[str, str], customer: str) -> list[dict[str, Any]]:
    params = {"type": "collection", "customer_id": customer}
    return (await api.http.get("/cases", params=params, headers=headers)).json()


async def test_a_scan_run_twice_opens_no_duplicate(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    lead = api.user("lead")
    two, two_invoices = _debtor(ledger, 40, 12, -5)  # the last one is not due yet
    one, _ = _debtor(ledger, 3)
    fine, _ = _debtor(ledger, -10)
    first = await _scan(api, lead)
    mine = {line["customer_id"]: line for line in first["lines"]}
    assert mine[two]["status"] == "opened" and mine[one]["status"] == "opened"
    assert fine not in mine
    assert mine[two]["invoice_ids"] == two_invoices[:2]  # oldest first, only the overdue
    assert mine[two]["amount"] == "200.00"

    again = await _scan(api, lead)
    assert again["opened"] == 0
    repeat = {line["customer_id"]: line for line in again["lines"]}
    assert repeat[two]["status"] == "already_open"
    assert repeat[two]["case_id"] == mine[two]["case_id"]
    [case] = await _collections(api, lead, two)
    assert case["id"] == mine[two]["case_id"] and case["amount"] == "200.00"
    assert case["sop"]["name"] == "collection"
    await terminate_cases(dev_server.client, _opened(first))


async def test_racing_scans_open_one_case(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    lead, admin = api.user("lead"), api.user("admin")
    customer, _ = _debtor(ledger, 8)
    results = await asyncio.gather(*(_scan(api, who) for who in (lead, admin, lead)))
    case_ids = {
        line["case_id"] for r in results for line in r["lines"] if line["customer_id"] == customer
    }
    assert len(case_ids) == 1
    assert len(await _collections(api, lead, customer)) == 1
    await terminate_cases(dev_server.client, [c for r in results for c in _opened(r)])


async def _dispute_in_billing(ledger: BillingService, customer: str, invoice: str) -> str:
    """What a dispute case's first step does: billing marks the invoice disputed."""
    dispute_id = f"DSP-{uuid.uuid4().hex[:8]}"
    billing = HttpBillingSystem(ledger.url)
    try:
        await billing.open_dispute(
            dispute_id,
            [invoice],
            Decimal("100.00"),
            "pricing",
            f"{dispute_id}:open",
            customer_id=customer,
            currency="EUR",
        )
    finally:
        await billing.aclose()
    return dispute_id


async def test_the_scan_leaves_disputed_invoices_out_and_says_which(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    lead = api.user("lead")
    partly, [old, recent] = _debtor(ledger, 40, 12)
    wholly, [only] = _debtor(ledger, 30)
    await _dispute_in_billing(ledger, partly, old)
    held_only = await _dispute_in_billing(ledger, wholly, only)
    sweep = await _scan(api, lead)
    lines = {line["customer_id"]: line for line in sweep["lines"]}
    # The disputed oldest invoice is neither dunned nor the debt the case id is derived from.
    assert lines[partly]["status"] == "opened" and lines[partly]["invoice_ids"] == [recent]
    assert lines[partly]["amount"] == "100.00"
    assert lines[partly]["case_id"].endswith(recent)
    assert lines[wholly]["status"] == "in_dispute" and lines[wholly]["case_id"] is None
    assert f"{only} (dispute {held_only})" in lines[wholly]["reason"]
    assert await _collections(api, lead, wholly) == []
    await terminate_cases(dev_server.client, _opened(sweep))


async def test_agents_cannot_scan_and_a_bad_region_opens_nothing(
    api: Api, ledger: BillingService
) -> None:
    agent = api.user("agent", queues=["collections-tier1"])
    assert (await api.http.post(SCAN, json={"region": "SG"}, headers=agent)).status_code == 403
    lead = api.user("lead")
    customer, _ = _debtor(ledger, 5)
    refused = await api.http.post(SCAN, json={"region": "MARS"}, headers=lead)
    assert refused.status_code == 422 and "region" in refused.json()["message"]
    assert await _collections(api, lead, customer) == []


async def _reviews(api: Api, headers: dict[str, str], customer: str) -> list[dict[str, Any]]:
    params = {"type": "credit_review", "customer_id": customer}
    return (await api.http.get("/cases", params=params, headers=headers)).json()


async def test_a_periodic_sweep_reviews_each_customer_once_a_period(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    system = api.user("system")
    customer, _ = _debtor(ledger, -10)  # limit 50000.00, owes 100.00 not yet due
    body = {"region": "24x7", "reason": "periodic", "as_of": "2026-11-23"}
    first = await api.http.post("/credit-reviews/sweep", json=body, headers=system)
    assert first.status_code == 200, first.text
    [line] = [x for x in first.json()["lines"] if x["customer_id"] == customer]
    assert line["status"] == "opened" and line["case_id"] == f"CRR-{customer}-periodic-2026Q4"
    again = await api.http.post("/credit-reviews/sweep", json=body, headers=system)
    [repeat] = [x for x in again.json()["lines"] if x["customer_id"] == customer]
    assert repeat["status"] == "already_open" and repeat["case_id"] == line["case_id"]
    [case] = await _reviews(api, system, customer)
    assert case["amount"] == "50000.00"  # the limit under review
    await terminate_cases(dev_server.client, _opened(first.json()))


async def test_a_limit_breach_sweep_reviews_only_customers_above_their_limit(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    lead = api.user("lead")
    within, _ = _debtor(ledger, 5)
    above = f"S-{uuid.uuid4().hex[:6]}"
    ledger.put_customer(above, limit="150.00")
    ledger.put_invoice(f"{above}-0", above, "400.00", TODAY, TODAY - timedelta(days=30))
    body = {"region": "24x7", "reason": "limit_breach"}
    swept = await api.http.post("/credit-reviews/sweep", json=body, headers=lead)
    assert swept.status_code == 200, swept.text
    lines = {x["customer_id"]: x for x in swept.json()["lines"]}
    assert above in lines and within not in lines
    assert lines[above]["status"] == "opened" and lines[above]["amount"] == "400.00"
    [case] = await _reviews(api, lead, above)
    assert case["reason_code"] == "limit_breach"
    await terminate_cases(dev_server.client, _opened(swept.json()))


async def test_a_scan_assigns_vendors_by_customer_within_the_callers_reach(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    lead = api.user("lead")
    acme = api.user("agent", vendor="acme", queues=["collections-tier1"])
    globex_lead = api.user("lead", vendor="globex")
    assigned, _ = _debtor(ledger, 9)
    unassigned, _ = _debtor(ledger, 9)
    refused = await api.http.post(
        SCAN,
        json={"region": "24x7", "customer_vendors": {assigned: "acme"}},
        headers=globex_lead,
    )
    assert refused.status_code == 403 and "vendor" in refused.json()["message"]
    assert await _collections(api, lead, assigned) == []  # refused before opening any

    sweep = await _scan(api, lead, customer_vendors={assigned: "acme"})
    mine = {line["customer_id"]: line["case_id"] for line in sweep["lines"]}
    [case] = await _collections(api, lead, assigned)
    assert case["vendor"] == "acme"
    assert (await api.http.get(f"/cases/{case['id']}", headers=acme)).status_code == 200
    # The customer with no vendor got a vendor-less case: hidden from vendor agents.
    [shared] = await _collections(api, lead, unassigned)
    assert shared["vendor"] is None
    assert (await api.http.get(f"/cases/{shared['id']}", headers=acme)).status_code == 404
    assert mine[assigned] == case["id"]
    await terminate_cases(dev_server.client, _opened(sweep))
