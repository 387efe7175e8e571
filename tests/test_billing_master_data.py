"""A customer's master data in the built-in billing service, over real HTTP through the
adapter: region (its calendar), time zone and language, loaded, checked and answered."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from billing.case_check import CaseFacts, CaseMismatchError, check_case
from billing.http_adapter import HttpBillingSystem
from billing.service.loading import CSV_COLUMNS, create_schema, load_csv, seed_demo
from store.db import make_engine
from tests.billing_harness import BillingService

TODAY = date(2026, 11, 23)


@pytest.fixture(scope="module")
def service(database_url: str) -> Iterator[BillingService]:
    with BillingService(database_url) as billing:
        billing.put_customer("M-SG", currency="SGD", region="SG", time_zone="Asia/Singapore")
        billing.put_customer("M-FR", region="FR", time_zone="Europe/Paris", language="fr")
        billing.put_invoice("M-FR-1", "M-FR", "100.00", TODAY - timedelta(5), TODAY - timedelta(35))
        billing.put_invoice("M-SG-1", "M-SG", "100.00", TODAY, TODAY)
        yield billing


@pytest_asyncio.fixture(loop_scope="session")
async def system(service: BillingService) -> AsyncIterator[HttpBillingSystem]:
    adapter = HttpBillingSystem(service.url)
    yield adapter
    await adapter.aclose()


async def test_a_customer_answers_its_master_data(system: HttpBillingSystem) -> None:
    customer = await system.customer("M-FR")
    assert (customer.region, customer.time_zone, customer.language) == (
        "FR",
        "Europe/Paris",
        "fr",
    )
    assert customer.email == "ap@m-fr.example"
    overdue = await system.overdue_customers(TODAY)
    line = next(line for line in overdue.records if line.customer_id == "M-FR")
    assert (line.region, line.time_zone, line.language) == ("FR", "Europe/Paris", "fr")


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("region", "S G", "invalid_region"),
        ("time_zone", "Mars/Olympus", "invalid_time_zone"),
        ("language", "French", "invalid_language"),
    ],
)
async def test_bad_master_data_is_refused_naming_it(
    service: BillingService, system: HttpBillingSystem, field: str, value: str, code: str
) -> None:
    body = {"name": "x", "currency": "EUR", "credit_limit": "1.00", field: value}
    response = httpx.put(f"{service.url}/customers/M-FR", json=body, headers=service.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert value in response.json()["error"]["message"]
    assert (await system.customer("M-FR")).region == "FR"  # nothing changed


async def test_the_case_check_names_every_field_billing_contradicts(
    system: HttpBillingSystem,
) -> None:
    facts = CaseFacts("M-FR", ["M-FR-1", "M-SG-1", "M-NONE"], "EUR", "SG")
    with pytest.raises(CaseMismatchError) as caught:
        await check_case(system, facts, TODAY)
    assert [(p.field, p.value) for p in caught.value.problems] == [
        ("region", "SG"),
        ("invoice_ids[1]", "M-SG-1"),  # another customer's
        ("invoice_ids[1]", "M-SG-1"),  # in SGD
        ("invoice_ids[2]", "M-NONE"),
    ]
    agreed = await check_case(system, CaseFacts("M-FR", ["M-FR-1"]), TODAY)
    assert agreed.currency == "EUR"


def test_csv_master_data_columns_are_optional(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_schema(engine)
    book = tmp_path / "book.csv"
    header = ",".join([*CSV_COLUMNS, "region", "time_zone", "language"])
    book.write_text(
        f"{header}\nC-JP,Nippon KK,ap@jp.example,JPY,100,,,,,,JP,Asia/Tokyo,ja\n"
        "C-X,X,,EUR,100,,,,,,,,\n"
    )
    assert load_csv(engine, book).customers == 2
    rows = dict(
        (r[0], r[1:])
        for r in engine.connect().exec_driver_sql(
            "SELECT id, region, time_zone, language FROM customers"
        )
    )
    assert rows == {"C-JP": ("JP", "Asia/Tokyo", "ja"), "C-X": ("", "", "")}


def test_the_demo_book_places_each_customer_and_an_old_ledger_gains_the_columns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # a ledger from before master data
        old.execute(
            "CREATE TABLE customers (id VARCHAR(64) PRIMARY KEY, name VARCHAR(200), "
            "email VARCHAR(200), currency VARCHAR(3), credit_limit_cents BIGINT, "
            "on_hold BOOLEAN, hold_reason VARCHAR(500))"
        )
        old.execute("INSERT INTO customers VALUES ('OLD', 'Old', '', 'EUR', 100, 0, '')")
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    create_schema(engine)  # twice: nothing left to add
    with engine.connect() as connection:
        old_row = connection.exec_driver_sql(
            "SELECT region, time_zone, language FROM customers WHERE id = 'OLD'"
        ).one()
    assert tuple(old_row) == ("", "", "")
    fresh = make_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    create_schema(fresh)
    seed_demo(fresh, TODAY)
    with fresh.connect() as connection:
        regions = dict(connection.exec_driver_sql("SELECT id, region FROM customers").all())
    assert regions["CUST-001"] == "FR" and regions["CUST-002"] == "SG"
