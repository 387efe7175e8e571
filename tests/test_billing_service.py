"""The built-in billing service over real HTTP, through the adapter Casebook's activities use."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.contract import BillingBusinessError, BillingUnavailableError, Installment
from billing.http_adapter import HttpBillingSystem
from billing.service.loading import CSV_COLUMNS, LoadError, load_csv, seed_demo
from billing.service.tables import CreditMemoRow, CustomerRow
from tests.billing_harness import BillingService

TODAY = date(2026, 11, 23)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def service(database_url: str) -> Iterator[BillingService]:
    billing = BillingService(database_url)
    billing.start()
    billing.put_customer("C-A", limit="20000.00")
    billing.put_invoice("A-1", "C-A", "1000.00", TODAY - timedelta(days=10), TODAY - timedelta(40))
    billing.put_invoice("A-2", "C-A", "500.00", TODAY + timedelta(days=20), TODAY - timedelta(10))
    billing.put_customer("C-B")
    billing.put_invoice("B-1", "C-B", "300.00", TODAY - timedelta(days=3), TODAY - timedelta(33))
    yield billing
    billing.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def system(service: BillingService) -> AsyncIterator[HttpBillingSystem]:
    adapter = HttpBillingSystem(service.url)
    yield adapter
    await adapter.aclose()


def _memos(service: BillingService, invoice_id: str) -> int:
    with Session(service.engine) as session:
        query = select(func.count()).where(CreditMemoRow.invoice_id == invoice_id)
        return int(session.scalar(query) or 0)


async def test_exposure_open_items_and_overdue_scan(system: HttpBillingSystem) -> None:
    exposure = await system.customer_exposure("C-A", TODAY)
    assert exposure.open_amount == Decimal("1500.00")
    assert exposure.overdue_amount == Decimal("1000.00")
    assert exposure.available_credit == Decimal("18500.00")
    assert exposure.max_days_past_due == 10
    assert [i.id for i in exposure.open_items] == ["A-1", "A-2"]
    overdue = (await system.overdue_customers(TODAY, min_days=1)).records
    assert [(o.customer_id, o.invoice_ids) for o in overdue] == [
        ("C-A", ["A-1"]),
        ("C-B", ["B-1"]),
    ]
    later = await system.overdue_customers(TODAY, min_days=5)
    assert [o.customer_id for o in later.records] == ["C-A"]


async def test_a_credit_memo_is_issued_once_per_key(
    system: HttpBillingSystem, service: BillingService
) -> None:
    first = await system.issue_credit_memo(
        "A-2", Decimal("120.50"), "pricing", "case-1/credit", customer_id="C-A", currency="EUR"
    )
    again = await system.issue_credit_memo(
        "A-2", Decimal("120.50"), "pricing", "case-1/credit", customer_id="C-A", currency="EUR"
    )
    assert again == first and first.invoice_open_balance == Decimal("379.50")
    assert service.open_balance("A-2") == Decimal("379.50")
    assert _memos(service, "A-2") == 1
    with pytest.raises(BillingBusinessError) as reused:
        await system.issue_credit_memo(
            "A-2", Decimal("99.00"), "pricing", "case-1/credit", customer_id="C-A", currency="EUR"
        )
    assert reused.value.code == "idempotency_key_reused" and reused.value.status == 422


async def test_racing_retries_with_one_key_apply_once(
    system: HttpBillingSystem, service: BillingService
) -> None:
    calls = [
        system.issue_credit_memo(
            "B-1", Decimal("10.00"), "tax", "race", customer_id="C-B", currency="EUR"
        )
        for _ in range(6)
    ]
    memos = await asyncio.gather(*calls)
    assert len({m.id for m in memos}) == 1
    assert _memos(service, "B-1") == 1 and service.open_balance("B-1") == Decimal("290.00")


async def test_refusals_are_business_errors_that_change_nothing(
    system: HttpBillingSystem, service: BillingService
) -> None:
    before = service.open_balance("A-1")
    with pytest.raises(BillingBusinessError) as above:
        await system.issue_credit_memo(
            "A-1", Decimal("5000.00"), "x", "too-much", customer_id="C-A", currency="EUR"
        )
    assert above.value.code == "amount_above_open_balance" and above.value.status == 422
    assert "open balance 1000.00" in above.value.message
    with pytest.raises(BillingBusinessError) as unknown:
        await system.issue_credit_memo(
            "NOPE", Decimal("1.00"), "x", "unknown", customer_id="C-A", currency="EUR"
        )
    assert (unknown.value.code, unknown.value.status) == ("invoice_not_found", 404)
    with pytest.raises(BillingBusinessError) as cents:
        await system.issue_credit_memo(
            "A-1", Decimal("1.001"), "x", "fraction", customer_id="C-A", currency="EUR"
        )
    assert cents.value.code == "invalid_amount"
    assert service.open_balance("A-1") == before


async def test_a_closed_invoice_refuses_credit_with_409(
    system: HttpBillingSystem, service: BillingService
) -> None:
    service.put_invoice("C-1", "C-B", "50.00", TODAY, TODAY)
    service.pay("C-1", "50.00", key="pay-c1")
    status = await system.payment_status(["C-1"])
    assert status.settled and status.paid_amount == Decimal("50.00")
    with pytest.raises(BillingBusinessError) as closed:
        await system.issue_credit_memo(
            "C-1", Decimal("5.00"), "x", "closed", customer_id="C-B", currency="EUR"
        )
    assert (closed.value.code, closed.value.status) == ("invoice_closed", 409)


async def test_hold_limit_promise_and_plan(system: HttpBillingSystem) -> None:
    hold = await system.set_credit_hold("C-B", True, "COL-C-B", "hold-1")
    assert hold.on_hold and (await system.customer("C-B")).on_hold
    await system.set_credit_hold("C-B", False, "paid", "hold-2")
    assert not (await system.customer("C-B")).on_hold
    limit = await system.update_credit_limit("C-A", Decimal("30000"), "limit-1")
    assert (limit.previous_limit, limit.credit_limit) == (Decimal("20000.00"), Decimal("30000.00"))
    promise = await system.record_promise_to_pay(
        "C-A", ["A-1"], TODAY + timedelta(days=5), Decimal("1000.00"), "ptp-1"
    )
    assert promise.id.startswith("PTP-")
    with pytest.raises(BillingBusinessError) as short:
        await system.record_payment_plan(
            "C-A", ["A-1"], [Installment(due_on=TODAY, amount=Decimal("10"))], "plan-short"
        )
    assert short.value.code == "plan_does_not_cover_balance"
    halves = [
        Installment(due_on=TODAY + timedelta(days=30 * n), amount=Decimal("500")) for n in (1, 2)
    ]
    plan = await system.record_payment_plan("C-A", ["A-1"], halves, "plan-1")
    assert plan.installments == halves
    with pytest.raises(BillingBusinessError) as foreign:
        await system.record_promise_to_pay("C-A", ["B-1"], TODAY, Decimal("1"), "ptp-foreign")
    assert foreign.value.code == "invoice_not_of_customer"


def test_a_write_without_an_idempotency_key_is_refused(service: BillingService) -> None:
    response = httpx.put(f"{service.url}/customers/C-A/credit-hold", json={"on_hold": True})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_required"
    assert service.get("/customers/C-A")["on_hold"] is False  # type: ignore[index]


async def test_an_outage_is_unavailable_not_a_refusal() -> None:
    stopped = BillingService("sqlite://")  # never started: the port refuses connections
    adapter = HttpBillingSystem(stopped.url, timeout=2)
    with pytest.raises(BillingUnavailableError):
        await adapter.issue_credit_memo(
            "A-1", Decimal("1"), "x", "k", customer_id="C-A", currency="EUR"
        )
    await adapter.aclose()


def test_csv_loads_all_rows_or_reports_every_bad_one(tmp_path: Path) -> None:
    billing = BillingService(f"sqlite:///{tmp_path / 'ledger.db'}")
    header = ",".join(CSV_COLUMNS) + "\n"
    good = tmp_path / "good.csv"
    good.write_text(
        header + "K1,Kay Ltd,ap@kay.example,EUR,1000,K1-1,2026-10-01,2026-10-31,250.00,\n"
        "K1,Kay Ltd,ap@kay.example,EUR,1000,K1-2,2026-10-05,2026-11-04,80.00,30.00\n"
        "K2,Two SA,,EUR,0,,,,,\n"
    )
    loaded = load_csv(billing.engine, good)
    assert (loaded.customers, loaded.invoices) == (2, 2)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        header + "K3,Three,,EUR,100,K3-1,2026-10-01,2026-10-31,12.5.0,\n"
        "K4,Four,,EUR,100,K4-1,2026-13-01,2026-10-31,10,\n"
        "K5,Five,,EUR,100,K5-1,,2026-10-31,10,\n"
        "K6,Six,,EUR,100,K6-1,2026-10-01,2026-10-31,10,\n"
    )
    with pytest.raises(LoadError) as refused:
        load_csv(billing.engine, bad)
    assert [p.split(": ", 1)[0] for p in refused.value.problems] == [
        "bad.csv:2",
        "bad.csv:3",
        "bad.csv:4",
    ]
    assert "amount: '12.5.0' is not a decimal amount" in refused.value.problems[0]
    assert "issued_on" in refused.value.problems[1] and "issued_on" in refused.value.problems[2]
    with Session(billing.engine) as session:  # nothing of the bad file, not even K6
        assert sorted(session.scalars(select(CustomerRow.id))) == ["K1", "K2"]


def test_the_documented_contract_is_the_served_one() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "billing.service", "openapi"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    documented = (REPO / "docs" / "billing-openapi.yaml").read_text()
    assert printed == documented, (
        "regenerate: python -m billing.service openapi > docs/billing-openapi.yaml"
    )


async def test_a_gateway_with_a_token_refuses_callers_without_it(tmp_path: Path) -> None:
    with BillingService(f"sqlite:///{tmp_path / 'ledger.db'}", token="s3cret") as guarded:
        assert httpx.get(f"{guarded.url}/healthz").status_code == 200  # probes need no token
        anonymous = HttpBillingSystem(guarded.url)
        with pytest.raises(BillingBusinessError) as refused:
            await anonymous.customer("C-A")
        assert (refused.value.code, refused.value.status) == ("unauthorized", 401)
        wrong = HttpBillingSystem(guarded.url, token="guess")
        with pytest.raises(BillingBusinessError):
            await wrong.customer("C-A")
        trusted = HttpBillingSystem(guarded.url, token="s3cret")
        with pytest.raises(BillingBusinessError) as unknown:
            await trusted.customer("C-A")  # through the gate: an empty ledger answers 404
        assert unknown.value.code == "customer_not_found"
        for adapter in (anonymous, wrong, trusted):
            await adapter.aclose()


async def test_the_demo_book_has_overdue_debt_and_a_customer_above_its_limit(
    tmp_path: Path,
) -> None:
    demo = BillingService(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert seed_demo(demo.engine, TODAY) and not seed_demo(demo.engine, TODAY)  # once
    demo.start()
    adapter = HttpBillingSystem(demo.url)
    try:
        above = (await adapter.customers(over_limit_only=True)).records
        assert [(c.id, c.open_amount) for c in above] == [("CUST-006", Decimal("8200.00"))]
        overdue = {line.customer_id for line in (await adapter.overdue_customers(TODAY)).records}
        assert {"CUST-001", "CUST-002", "CUST-004"} <= overdue
    finally:
        await adapter.aclose()
        demo.stop()
