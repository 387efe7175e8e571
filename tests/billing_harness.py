"""The built-in billing service, served over real HTTP on loopback for tests.

It can be stopped and started again on the same port: that is a billing outage.
"""

from __future__ import annotations

import threading
import time
from datetime import date
from decimal import Decimal

import httpx
import uvicorn
from sqlalchemy import Engine

from billing.service.app import create_app
from billing.service.loading import create_schema
from store.db import make_engine
from tests.ports import free_port

START_TIMEOUT_S = 10.0


class BillingService:
    """One ledger database; `start`/`stop` bring its HTTP server up and down.

    Without a `token` it runs as a dev run (`insecure_no_token`), as `casebook dev` did before
    it had one: tests that check the gate pass a token, and the helpers here send it.
    """

    def __init__(self, database_url: str, token: str = "") -> None:
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.engine: Engine = make_engine(database_url)
        create_schema(self.engine)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.engine, self.token, insecure_no_token=not self.token),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"billing service did not start on {self.url}")
            time.sleep(0.02)

    def __enter__(self) -> BillingService:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = self._thread = None

    def put_customer(
        self,
        customer_id: str,
        *,
        limit: str = "50000.00",
        currency: str = "EUR",
        **master_data: str,
    ) -> None:
        """`master_data`: region, time_zone, language (empty when not given)."""
        body = {
            "name": customer_id,
            "email": f"ap@{customer_id.lower()}.example",
            "currency": currency,
            "credit_limit": limit,
            **master_data,
        }
        httpx.put(
            f"{self.url}/customers/{customer_id}", json=body, headers=self.headers
        ).raise_for_status()

    def put_invoice(
        self, invoice_id: str, customer_id: str, amount: str, due_on: date, issued_on: date
    ) -> None:
        body = {
            "customer_id": customer_id,
            "issued_on": issued_on.isoformat(),
            "due_on": due_on.isoformat(),
            "amount": amount,
        }
        httpx.put(
            f"{self.url}/invoices/{invoice_id}", json=body, headers=self.headers
        ).raise_for_status()

    def pay(self, invoice_id: str, amount: str, key: str) -> None:
        response = httpx.post(
            f"{self.url}/invoices/{invoice_id}/payments",
            json={"amount": amount},
            headers={**self.headers, "Idempotency-Key": key},
        )
        response.raise_for_status()

    def get(self, path: str) -> object:
        response = httpx.get(f"{self.url}{path}", headers=self.headers)
        response.raise_for_status()
        return response.json()

    def open_balance(self, invoice_id: str) -> Decimal:
        invoice = self.get(f"/invoices/{invoice_id}")
        assert isinstance(invoice, dict)
        return Decimal(invoice["open_balance"])


# The invoices the shared test cases dispute (tests/harness.py): balances large enough that
# every test's credit memos fit, so tests never depend on each other's order. Each customer
# bills in the currency of the cases opened for it (`DISPUTE` in USD, `case_input` in EUR):
# billing refuses a credit memo in another currency than the invoice's.
SHARED_BOOK = {"CUST-001": ("USD", ["INV-1001"]), "C1": ("EUR", ["INV-1"])}
SHARED_BALANCE = "1000000000.00"


def put_shared_book(billing: BillingService, today: date) -> None:
    for customer_id, (currency, invoice_ids) in SHARED_BOOK.items():
        billing.put_customer(customer_id, currency=currency)
        for invoice_id in invoice_ids:
            billing.put_invoice(invoice_id, customer_id, SHARED_BALANCE, today, today)
