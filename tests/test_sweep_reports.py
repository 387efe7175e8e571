"""Sweeps report exactly what they did: `opened` counts only the cases this call started, and
a malformed record in billing's listing is reported and skipped, never a 500."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine, func
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from billing.service.tables import CustomerRow, InvoiceRow
from store.tables import CaseRow
from tests.billing_harness import BillingService
from tests.harness import Api, running_api, terminate_cases

pytestmark = pytest.mark.asyncio(loop_scope="session")
TODAY = date.today()
SCAN = "/collections/overdue-scan"
BOOK_SIZE = 100


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[BillingService]:
    with BillingService(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'billing.db'}") as billing:
        yield billing


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(
    dev_server: WorkflowEnvironment, engine: Engine, ledger: BillingService
) -> AsyncIterator[Api]:
    async with running_api(dev_server.client, engine, billing_url=ledger.url) as api:
        yield api


def _overdue_book(ledger: BillingService, prefix: str, size: int) -> list[str]:
    customers = [f"{prefix}-{n:03d}" for n in range(size)]
    due = TODAY - timedelta(days=10)
    for customer in customers:
        ledger.put_customer(customer)
        ledger.put_invoice(f"{customer}-I", customer, "100.00", due, due - timedelta(days=30))
    return customers


def _collections_of(engine: Engine, prefix: str) -> int:
    with Session(engine) as session:
        query = select(func.count()).where(
            CaseRow.type == "collection", CaseRow.customer_id.startswith(prefix)
        )
        return session.exec(query).one()


def _mine(sweep: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [line for line in sweep["lines"] if line["customer_id"].startswith(prefix)]


async def test_racing_scans_report_opened_exactly_once_per_case(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    prefix = f"R{uuid.uuid4().hex[:5]}"
    customers = _overdue_book(ledger, prefix, BOOK_SIZE)
    lead, admin = api.user("lead"), api.user("admin")
    answers = await asyncio.gather(
        *(api.http.post(SCAN, json={"region": "24x7"}, headers=h) for h in (lead, admin, lead))
    )
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    lines = [line for a in answers for line in _mine(a.json(), prefix)]
    opened = [line for line in lines if line["status"] == "opened"]
    assert len(opened) == _collections_of(api.engine, prefix) == len(customers)
    assert len({line["case_id"] for line in opened}) == len(opened)
    assert {line["status"] for line in lines} <= {"opened", "joined", "already_open"}
    await terminate_cases(dev_server.client, [line["case_id"] for line in opened])


def _malformed(ledger: BillingService, customer_id: str, currency: str) -> None:
    """A record the ledger holds but Casebook cannot take: written behind the API's back, as a
    real billing system's bad data would be."""
    due = TODAY - timedelta(days=20)
    with OrmSession(ledger.engine) as session, session.begin():
        session.add(
            CustomerRow(
                id=customer_id, name="bad", email="", currency=currency, credit_limit_cents=100
            )
        )
        session.flush()
        session.add(
            InvoiceRow(
                id=f"I{uuid.uuid4().hex[:8]}",
                customer_id=customer_id,
                currency=currency,
                issued_on=due - timedelta(days=30),
                due_on=due,
                amount_cents=5000,
                open_cents=5000,
            )
        )


async def test_a_malformed_billing_record_is_reported_and_the_rest_opened(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    prefix = f"M{uuid.uuid4().hex[:5]}"
    [good] = _overdue_book(ledger, prefix, 1)
    bad_id, bad_currency = f"{prefix} bad/1", f"{prefix}-zzz"
    _malformed(ledger, bad_id, "EUR")
    _malformed(ledger, bad_currency, "ZZZ")
    response = await api.http.post(SCAN, json={"region": "24x7"}, headers=api.user("lead"))
    assert response.status_code == 200, response.text
    lines = {line["customer_id"]: line for line in _mine(response.json(), prefix)}
    assert lines[good]["status"] == "opened"
    assert lines[bad_id]["status"] == "skipped" and "customer_id" in lines[bad_id]["reason"]
    assert lines[bad_currency]["status"] == "skipped"
    assert "currency" in lines[bad_currency]["reason"]
    assert response.json()["skipped"] >= 2
    assert _collections_of(api.engine, prefix) == 1
    await terminate_cases(dev_server.client, [lines[good]["case_id"]])


async def test_a_credit_review_sweep_skips_a_malformed_customer(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    prefix = f"C{uuid.uuid4().hex[:5]}"
    good, bad = f"{prefix}-ok", f"{prefix}-zzz"
    ledger.put_customer(good, limit="150.00")
    ledger.put_invoice(f"{good}-I", good, "400.00", TODAY, TODAY - timedelta(days=30))
    _malformed(ledger, bad, "ZZZ")  # owes 50.00 on a 1.00 limit: above it too
    body = {"region": "24x7", "reason": "limit_breach"}
    response = await api.http.post("/credit-reviews/sweep", json=body, headers=api.user("lead"))
    assert response.status_code == 200, response.text
    lines = {line["customer_id"]: line for line in _mine(response.json(), prefix)}
    assert lines[good]["status"] == "opened"
    assert lines[bad]["status"] == "skipped" and "currency" in lines[bad]["reason"]
    assert lines[bad]["case_id"] is None
    await terminate_cases(dev_server.client, [lines[good]["case_id"]])


async def test_a_customer_whose_contact_is_no_address_is_skipped_with_the_reason(
    api: Api, ledger: BillingService, dev_server: WorkflowEnvironment
) -> None:
    prefix = f"E{uuid.uuid4().hex[:5]}"
    [good] = _overdue_book(ledger, prefix, 1)
    bad = f"{prefix}-crlf"
    due = TODAY - timedelta(days=20)
    ledger.put_customer(bad)
    ledger.put_invoice(f"{bad}-I", bad, "100.00", due, due - timedelta(days=30))
    with OrmSession(ledger.engine) as session, session.begin():
        row = session.get(CustomerRow, bad)
        assert row is not None
        row.email = "ap@customer.test\r\nBcc: all@elsewhere.test"  # header injection
    response = await api.http.post(SCAN, json={"region": "24x7"}, headers=api.user("lead"))
    assert response.status_code == 200, response.text
    lines = {line["customer_id"]: line for line in _mine(response.json(), prefix)}
    assert lines[good]["status"] == "opened"
    assert lines[bad]["status"] == "skipped" and "contact" in lines[bad]["reason"]
    assert _collections_of(api.engine, prefix) == 1
    await terminate_cases(dev_server.client, [lines[good]["case_id"]])
