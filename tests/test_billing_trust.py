"""Attacks on the billing path, tried as a security reviewer would (issue 11).

Each test is the attack or the fault itself, against the real service over HTTP (SQLite and
PostgreSQL), through the adapter and the activity Casebook's workers use.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.billing import BillingActivities, BillingRequest
from billing.contract import BillingBusinessError, Installment
from billing.http_adapter import HttpBillingSystem
from billing.service.loading import CSV_COLUMNS, LoadError, load_csv
from billing.service.tables import CreditMemoRow, IdempotencyRow, PaymentRow
from tests.billing_harness import BillingService
from tests.ports import free_port

TODAY = date(2026, 11, 23)
TOKEN = "trust-test-token"
REPO = Path(__file__).resolve().parent.parent
URL_INJECTION = "INV-1/payments?"


@pytest.fixture(scope="module")
def service(database_url: str) -> Iterator[BillingService]:
    with BillingService(database_url, token=TOKEN) as billing:
        billing.put_customer("T-EUR", currency="EUR")
        billing.put_invoice("INV-1", "T-EUR", "1000.00", TODAY, TODAY - timedelta(days=30))
        billing.put_invoice("RACE-1", "T-EUR", "1000.00", TODAY, TODAY - timedelta(days=30))
        billing.put_customer("T-USD", currency="USD")
        billing.put_invoice("USD-1", "T-USD", "800.00", TODAY, TODAY - timedelta(days=30))
        yield billing


@pytest_asyncio.fixture(loop_scope="session")
async def system(service: BillingService) -> AsyncIterator[HttpBillingSystem]:
    adapter = HttpBillingSystem(service.url, token=SecretStr(TOKEN))  # as settings hold it
    yield adapter
    await adapter.aclose()


def _count(service: BillingService, column: Any, invoice_id: str) -> int:
    with Session(service.engine) as session:
        return int(session.scalar(select(func.count()).where(column == invoice_id)) or 0)


def _memos(service: BillingService, invoice_id: str) -> int:
    return _count(service, CreditMemoRow.invoice_id, invoice_id)


def _payments(service: BillingService, invoice_id: str) -> int:
    return _count(service, PaymentRow.invoice_id, invoice_id)


def _keys(service: BillingService) -> int:
    with Session(service.engine) as session:
        return int(session.scalar(select(func.count()).select_from(IdempotencyRow)) or 0)


# --- the ledger under concurrency ---------------------------------------------------------


async def test_fifty_concurrent_credit_memos_lower_the_balance_by_exactly_their_sum(
    system: HttpBillingSystem, service: BillingService
) -> None:
    memos = await asyncio.gather(
        *(
            system.issue_credit_memo(
                "RACE-1",
                Decimal("10.00"),
                "pricing",
                f"race-{n}",
                customer_id="T-EUR",
                currency="EUR",
            )
            for n in range(50)
        )
    )
    assert len({m.id for m in memos}) == 50
    assert service.open_balance("RACE-1") == Decimal("500.00")
    assert _memos(service, "RACE-1") == 50
    # Each answer names the balance right after its own memo: 50 distinct steps down.
    assert sorted(m.invoice_open_balance for m in memos) == [
        Decimal(500 + 10 * n).quantize(Decimal("0.01")) for n in range(50)
    ]


async def test_concurrent_payments_and_memos_never_take_the_balance_below_zero(
    service: BillingService, system: HttpBillingSystem
) -> None:
    service.put_invoice("RACE-2", "T-EUR", "100.00", TODAY, TODAY - timedelta(days=30))

    async def memo(n: int) -> bool:
        try:
            await system.issue_credit_memo(
                "RACE-2", Decimal("10.00"), "x", f"r2-memo-{n}", customer_id="T-EUR", currency="EUR"
            )
            return True
        except BillingBusinessError:
            return False

    async def pay(n: int, client: httpx.AsyncClient) -> bool:
        answer = await client.post(
            f"{service.url}/invoices/RACE-2/payments",
            json={"amount": "10.00"},
            headers={**service.headers, "Idempotency-Key": f"r2-pay-{n}"},
        )
        return answer.status_code == 201

    async with httpx.AsyncClient(timeout=60) as client:
        applied = await asyncio.gather(
            *(memo(n) for n in range(12)), *(pay(n, client) for n in range(12))
        )
    assert sum(applied) == 10  # 24 attempts of 10.00 on 100.00: exactly ten fit
    assert service.open_balance("RACE-2") == Decimal("0.00")
    assert _memos(service, "RACE-2") + _payments(service, "RACE-2") == 10


async def test_concurrent_limit_changes_each_report_the_limit_they_replaced(
    system: HttpBillingSystem, service: BillingService
) -> None:
    service.put_customer("T-LIM", limit="0.00")
    changes = await asyncio.gather(
        *(system.update_credit_limit("T-LIM", Decimal(n), f"lim-{n}") for n in range(1, 21))
    )
    # One after another, each change replaced what the one before it set: the limits
    # replaced are the start and every limit set but the last, each exactly once.
    final = (await system.customer("T-LIM")).credit_limit
    chain = {Decimal("0.00"), *(c.credit_limit for c in changes)} - {final}
    assert sorted(c.previous_limit for c in changes) == sorted(chain)


# --- ids that would change a URL ------------------------------------------------------------


async def test_the_adapter_refuses_a_url_changing_id_before_any_request() -> None:
    # Nothing listens here: a request that went out would be an outage, not a refusal.
    nowhere = HttpBillingSystem(f"http://127.0.0.1:{free_port()}", timeout=2)
    bad = URL_INJECTION
    plan = [Installment(due_on=TODAY, amount=Decimal("1"))]
    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        (
            "invoice_id",
            lambda: nowhere.issue_credit_memo(
                bad, Decimal("1"), "x", "k", customer_id="C1", currency="EUR"
            ),
        ),
        ("customer_id", lambda: nowhere.customer(bad)),
        ("customer_id", lambda: nowhere.customer_exposure("C1/../x", TODAY)),
        ("customer_id", lambda: nowhere.set_credit_hold("C1?", True, "x", "k")),
        ("customer_id", lambda: nowhere.update_credit_limit("C 1", Decimal("1"), "k")),
        (
            "invoice_ids",
            lambda: nowhere.record_promise_to_pay("C1", [bad], TODAY, Decimal("1"), "k"),
        ),
        ("invoice_ids", lambda: nowhere.record_payment_plan("C1", ["%2F"], plan, "k")),
        ("invoice_ids", lambda: nowhere.get_invoices(["INV-1", "../x"], TODAY)),
        ("invoice_ids", lambda: nowhere.payment_status(["INV-1\n"])),
    ]
    try:
        for field, call in calls:
            with pytest.raises(BillingBusinessError) as refused:
                await call()
            assert (refused.value.code, refused.value.status) == ("invalid_id", 422)
            assert field in refused.value.message
    finally:
        await nowhere.aclose()


async def test_a_url_changing_invoice_id_records_no_payment_anywhere(
    system: HttpBillingSystem, service: BillingService
) -> None:
    before = service.open_balance("INV-1")
    with pytest.raises(BillingBusinessError) as refused:
        await system.issue_credit_memo(
            URL_INJECTION, Decimal("10.00"), "x", "inject-1", customer_id="T-EUR", currency="EUR"
        )
    assert refused.value.code == "invalid_id"
    body = {"amount": "10.00", "reason": "x", "customer_id": "T-EUR", "currency": "EUR"}
    headers = {**service.headers, "Idempotency-Key": "inject-2"}
    # What an unquoting client sends: the path ends at `?`, so it lands on the payments
    # route; that route takes only a payment's own fields, so a memo's body is refused.
    raw = httpx.post(
        f"{service.url}/invoices/{URL_INJECTION}/credit-memos", json=body, headers=headers
    )
    assert raw.status_code == 422 and raw.json()["error"]["code"] == "invalid_request"
    # Quoted, the id is one path segment that names no invoice a route would take.
    quoted = httpx.post(
        f"{service.url}/invoices/INV-1%2Fpayments%3F/credit-memos", json=body, headers=headers
    )
    assert quoted.status_code == 404 and set(quoted.json()["error"]) == {"code", "message"}
    odd = httpx.post(f"{service.url}/invoices/INV-1%3F/credit-memos", json=body, headers=headers)
    assert odd.status_code == 422 and "invoice_id" in odd.json()["error"]["message"]
    assert service.open_balance("INV-1") == before
    assert _payments(service, "INV-1") == 0 and _memos(service, "INV-1") == 0


def test_the_service_refuses_ids_outside_the_pattern_in_paths_and_bodies(
    service: BillingService,
) -> None:
    keys = _keys(service)
    answers = [
        httpx.put(
            f"{service.url}/customers/T-EUR%20x/credit-hold",
            json={"on_hold": True},
            headers={**service.headers, "Idempotency-Key": "bad-path"},
        ),
        httpx.post(
            f"{service.url}/customers/T-EUR/promises-to-pay",
            json={"invoice_ids": ["INV-1?x"], "promised_on": "2026-12-01", "amount": "1.00"},
            headers={**service.headers, "Idempotency-Key": "bad-body"},
        ),
        httpx.get(
            f"{service.url}/payment-status",
            params={"id": ["INV-1", "a/b"]},
            headers=service.headers,
        ),
        httpx.put(
            f"{service.url}/invoices/NEW-1",
            json={
                "customer_id": "T-EUR/x",
                "issued_on": "2026-11-01",
                "due_on": "2026-12-01",
                "amount": "5",
            },
            headers=service.headers,
        ),
    ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_request"
    assert "customer_id" in answers[0].json()["error"]["message"]
    assert "invoice_ids" in answers[1].json()["error"]["message"]
    assert service.get("/customers/T-EUR")["on_hold"] is False  # type: ignore[index]
    assert _keys(service) == keys


def test_loading_checks_ids_and_currencies_and_never_lifts_a_hold(
    service: BillingService, tmp_path: Path
) -> None:
    header = ",".join(CSV_COLUMNS) + "\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(
        header + "K/1,Kay,,EUR,100,,,,,\n"
        "K2,Two,,EUR,100,K2-1?x,2026-10-01,2026-10-31,10,\n"
        "K3,Three,,EUX,100,,,,,\n"
    )
    with pytest.raises(LoadError) as refused:
        load_csv(service.engine, bad)
    assert "customer_id" in refused.value.problems[0]
    assert "invoice_id" in refused.value.problems[1]
    assert "EUX" in refused.value.problems[2] and len(refused.value.problems) == 3
    held = httpx.put(
        f"{service.url}/customers/T-USD/credit-hold",
        json={"on_hold": True, "reason": "COL-1"},
        headers={**service.headers, "Idempotency-Key": "hold-before-reload"},
    )
    assert held.status_code == 200
    service.put_customer("T-USD", currency="USD")  # master data loaded again
    assert service.get("/customers/T-USD")["on_hold"] is True  # type: ignore[index]
    httpx.put(
        f"{service.url}/customers/T-USD/credit-hold",
        json={"on_hold": False},
        headers={**service.headers, "Idempotency-Key": "hold-after-reload"},
    ).raise_for_status()


# --- a memo for another customer, or in another currency -------------------------------------


@pytest.mark.parametrize(
    ("customer_id", "currency", "code"),
    [("T-EUR", "EUR", "invoice_not_of_customer"), ("T-USD", "EUR", "currency_mismatch")],
)
async def test_a_memo_off_the_cases_customer_or_currency_is_refused_and_writes_nothing(
    system: HttpBillingSystem, service: BillingService, customer_id: str, currency: str, code: str
) -> None:
    keys = _keys(service)
    with pytest.raises(BillingBusinessError) as refused:
        await system.issue_credit_memo(
            "USD-1",
            Decimal("50.00"),
            "x",
            f"foreign-{code}",
            customer_id=customer_id,
            currency=currency,
        )
    assert (refused.value.code, refused.value.status) == (code, 422)
    assert service.open_balance("USD-1") == Decimal("800.00")
    assert _memos(service, "USD-1") == 0 and _keys(service) == keys


def test_a_memo_request_must_name_customer_and_currency(service: BillingService) -> None:
    answer = httpx.post(
        f"{service.url}/invoices/USD-1/credit-memos",
        json={"amount": "1.00", "reason": "x"},
        headers={**service.headers, "Idempotency-Key": "no-customer"},
    )
    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert "customer_id" in message and "currency" in message
    assert _memos(service, "USD-1") == 0


# --- the activity: the case's customer and currency, never the SOP's word for it ------------


def _activity_request(action: str, args: dict[str, Any], **case: str) -> BillingRequest:
    return BillingRequest(
        action=action,
        args=args,
        idempotency_key=f"case-x:{action}:{len(case)}",
        case_id="case-x",
        **case,
    )


async def _run(service: BillingService, request: BillingRequest) -> dict[str, Any]:
    activities = BillingActivities(service.url, token=TOKEN)
    return await ActivityEnvironment().run(activities.billing_call, request)


async def _refusal(service: BillingService, request: BillingRequest) -> dict[str, Any]:
    with pytest.raises(ApplicationError) as refused:
        await _run(service, request)
    assert refused.value.non_retryable
    return refused.value.details[0]


@pytest.mark.parametrize(
    ("action", "args"),
    [
        ("set_credit_hold", {"customer_id": "T-USD"}),
        ("release_credit_hold", {"customer_id": "T-USD"}),
        ("update_credit_limit", {"customer_id": "T-USD", "credit_limit": "1"}),
        (
            "record_promise_to_pay",
            {
                "customer_id": "T-USD",
                "invoice_ids": ["USD-1"],
                "promised_on": "2026-12-01",
                "amount": "1",
            },
        ),
        (
            "record_payment_plan",
            {
                "customer_id": "T-USD",
                "invoice_ids": ["USD-1"],
                "installments": [{"due_on": "2026-12-01", "amount": "800.00"}],
            },
        ),
    ],
)
async def test_a_customer_write_for_another_customer_than_the_cases_is_refused(
    service: BillingService, action: str, args: dict[str, Any]
) -> None:
    before = service.get("/customers/T-USD")
    keys = _keys(service)
    request = _activity_request(action, args, case_customer_id="T-EUR", case_currency="EUR")
    error = await _refusal(service, request)
    assert error["code"] == "customer_mismatch" and "T-USD" in error["message"]
    assert service.get("/customers/T-USD") == before and _keys(service) == keys


async def test_the_activity_sends_the_cases_customer_and_currency_with_a_memo(
    service: BillingService,
) -> None:
    args = {"invoice_id": "USD-1", "amount": "5.00", "reason": "pricing"}
    foreign = _activity_request(
        "issue_credit_memo", args, case_customer_id="T-EUR", case_currency="EUR"
    )
    assert (await _refusal(service, foreign))["code"] == "invoice_not_of_customer"
    unknown = _activity_request("issue_credit_memo", args)
    assert (await _refusal(service, unknown))["code"] == "case_customer_unknown"
    assert _memos(service, "USD-1") == 0
    own = _activity_request(
        "issue_credit_memo", args, case_customer_id="T-USD", case_currency="USD"
    )
    memo = await _run(service, own)
    assert memo["invoice_open_balance"] == "795.00" and _memos(service, "USD-1") == 1


# --- the token ------------------------------------------------------------------------------


def _serve(tmp_path: Path, port: int, *extra: str, **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if k != "BILLING_TOKEN"}
    command = [sys.executable, "-m", "billing.service", "serve", "--no-seed"]
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    return subprocess.Popen(
        [*command, "--db", database, "--port", str(port), *extra],
        cwd=REPO,
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"billing did not start on {url}")


def test_the_service_will_not_start_without_a_token(tmp_path: Path) -> None:
    port = free_port()
    refused = _serve(tmp_path, port)
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert "BILLING_TOKEN" in out and "--insecure-no-token" in out
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.mark.parametrize("mode", ["token", "dev"])
def test_with_a_token_a_call_without_it_gets_401_and_a_dev_run_says_it_is_open(
    tmp_path: Path, mode: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if mode == "token":
        process = _serve(tmp_path, port, BILLING_TOKEN="s3cret-token")
    else:
        process = _serve(tmp_path, port, "--insecure-no-token")
    try:
        _wait_healthy(url, process)
        anonymous = httpx.get(f"{url}/customers")
        trusted = httpx.get(f"{url}/customers", headers={"Authorization": "Bearer s3cret-token"})
        if mode == "token":
            assert anonymous.status_code == 401
            assert anonymous.json()["error"]["code"] == "unauthorized"
            assert trusted.status_code == 200
        else:
            assert anonymous.status_code == 200
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    if mode == "dev":
        assert "without a token" in out
