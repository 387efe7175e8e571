"""DSO, CEI and average days delinquent against a small ledger, from the textbook formulas.

The ledger is the built-in billing service over HTTP; the expected values are computed
here by hand from the invoices, payments and credits the test puts in.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.orm import Session

from billing.contract import BillingBusinessError
from billing.http_adapter import HttpBillingSystem
from billing.service.tables import CreditMemoRow, PromiseToPayRow
from reports.ledger import ledger_measures
from tests.billing_harness import BillingService

pytestmark = pytest.mark.asyncio(loop_scope="session")
NOV1, NOV30 = date(2026, 11, 1), date(2026, 11, 30)


@pytest.fixture(scope="module")
def ledger(database_url: str) -> Iterator[BillingService]:
    """October: 1,000 invoiced (due Nov 15). November: 600 (due Dec 20) and 400 (due Nov
    20) invoiced; 700 of October's paid on Nov 10; 100 credited on the 400 on Nov 25.
    A USD invoice stays out of EUR figures."""
    billing = BillingService(database_url)
    billing.start()
    billing.put_customer("C-L", limit="100000.00")
    billing.put_invoice("L-OCT", "C-L", "1000.00", date(2026, 11, 15), date(2026, 10, 16))
    billing.put_invoice("L-NOV1", "C-L", "600.00", date(2026, 12, 20), date(2026, 11, 20))
    billing.put_invoice("L-NOV2", "C-L", "400.00", date(2026, 11, 20), date(2026, 11, 5))
    httpx.post(
        f"{billing.url}/invoices/L-OCT/payments",
        json={"amount": "700.00", "received_on": "2026-11-10"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    ).raise_for_status()
    with Session(billing.engine) as session:
        at = datetime(2026, 11, 25, 12, tzinfo=UTC)
        session.add(
            CreditMemoRow(id="CM-L", invoice_id="L-NOV2", amount_cents=10000, created_at=at)
        )
        # Kept: 700 promised for Nov 9 on L-OCT, paid Nov 10 (within the 2 days' tolerance).
        # Broken: 200 promised for Nov 20 on L-NOV2, nothing paid.
        promised = datetime(2026, 11, 1, 9, tzinfo=UTC)
        for pid, invoice, day, cents in (("P-1", "L-OCT", 9, 70000), ("P-2", "L-NOV2", 20, 20000)):
            session.add(
                PromiseToPayRow(
                    id=pid,
                    customer_id="C-L",
                    invoice_ids=[invoice],
                    promised_on=date(2026, 11, day),
                    amount_cents=cents,
                    created_at=promised,
                )
            )
        session.commit()
    yield billing
    billing.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def system(ledger: BillingService) -> AsyncIterator[HttpBillingSystem]:
    adapter = HttpBillingSystem(ledger.url)
    yield adapter
    await adapter.aclose()


async def test_dso_cei_and_add_equal_the_textbook_formulas(system: HttpBillingSystem) -> None:
    got = await ledger_measures(system, "EUR", NOV1, NOV30, months=1)
    opening = Decimal("1000")  # October's invoice, unpaid on Nov 1
    sales = Decimal("1000")  # 600 + 400 invoiced in November
    closing = Decimal("1000") + sales - Decimal("700") - Decimal("100")  # 1,200
    current = Decimal("600")  # only L-NOV1 is not yet due on Nov 30
    days = 30
    dso = closing / sales * days
    best = current / sales * days
    cei = (opening + sales / 1 - closing) / (opening + sales / 1 - current) * 100
    assert got["opening_ar"] == "1000.00" and got["closing_ar"] == "1200.00"
    assert got["collected"] == "700.00" and got["credited"] == "100.00"
    assert got["dso"] == str(dso.quantize(Decimal("0.01")))  # 36.00
    assert got["best_possible_dso"] == str(best.quantize(Decimal("0.01")))  # 18.00
    assert got["average_days_delinquent"] == str((dso - best).quantize(Decimal("0.01")))
    assert got["cei"] == str(cei.quantize(Decimal("0.01")))  # 57.14
    assert (got["promises_due"], got["promises_kept"], got["promise_kept_rate"]) == (2, 1, 0.5)


async def test_a_period_reads_the_ledger_as_it_stood(system: HttpBillingSystem) -> None:
    october = await ledger_measures(system, "EUR", date(2026, 10, 1), date(2026, 10, 31), 1)
    # Only October's invoice, nothing paid yet: DSO = 1000/1000*31; all of it current.
    assert october["closing_ar"] == "1000.00" and october["dso"] == "31.00"
    assert october["average_days_delinquent"] == "0.00"
    none = await ledger_measures(system, "USD", NOV1, NOV30, 1)
    assert none["dso"] is None and none["credit_sales"] == "0.00"


async def test_bad_currency_or_period_is_refused(system: HttpBillingSystem) -> None:
    with pytest.raises(BillingBusinessError, match="end"):
        await system.receivables("EUR", NOV30, NOV1)
    with pytest.raises(BillingBusinessError, match="currency"):
        await system.receivables("E1R", NOV1, NOV30)
