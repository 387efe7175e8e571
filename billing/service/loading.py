"""Putting customers and invoices into the built-in ledger: a CSV file, or the demo book.

The CSV has one row per invoice, with its customer's master data on the row (a customer
without invoices has the invoice columns empty; `region`, `time_zone` and `language` are
optional columns). A file with any bad row loads nothing and every bad row is reported with
its line number.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from billing.contract import BillingBusinessError, Customer
from billing.service import ledger
from billing.service.tables import Base, CustomerRow

CSV_COLUMNS = (
    "customer_id",
    "customer_name",
    "email",
    "currency",
    "credit_limit",
    "invoice_id",
    "issued_on",
    "due_on",
    "amount",
    "open_balance",
)
INVOICE_COLUMNS = ("invoice_id", "issued_on", "due_on", "amount")
MASTER_DATA_COLUMNS = ("region", "time_zone", "language")  # optional: "" when absent


class LoadError(ValueError):
    """The file was refused; `problems` names each bad row and column."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Loaded:
    customers: int
    invoices: int


def create_schema(engine: Engine) -> None:
    """Create the tables; a ledger made by an older version gains the columns it lacks (each
    new column has a default, so its rows stay valid)."""
    Base.metadata.create_all(engine)
    present = inspect(engine)
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in present.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have:
                    kind = column.type.compile(engine.dialect)
                    default = column.default.arg if column.default is not None else None
                    literal = "''" if default == "" else "0" if default in (0, False) else "NULL"
                    connection.execute(
                        text(
                            f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind} '
                            f"DEFAULT {literal}"
                        )
                    )


def _decimal(text: str, column: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{column}: {text!r} is not a decimal amount") from None


def _date(text: str, column: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{column}: {text!r} is not a date (YYYY-MM-DD)") from None


def _load_row(session: Session, row: dict[str, str]) -> bool:
    """Put one row's customer (and invoice); True when the row carried an invoice."""
    ledger.put_customer(
        session,
        Customer(
            id=row["customer_id"],
            name=row["customer_name"] or row["customer_id"],
            email=row["email"],
            currency=row["currency"].upper(),
            credit_limit=_decimal(row["credit_limit"], "credit_limit"),
            **{c: row.get(c, "") for c in MASTER_DATA_COLUMNS},
        ),
    )
    if not any(row[c] for c in INVOICE_COLUMNS):
        return False
    missing = [c for c in INVOICE_COLUMNS if not row[c]]
    if missing:
        raise ValueError(f"an invoice row needs {', '.join(missing)}")
    session.flush()
    ledger.put_invoice(
        session,
        row["invoice_id"],
        row["customer_id"],
        _date(row["issued_on"], "issued_on"),
        _date(row["due_on"], "due_on"),
        _decimal(row["amount"], "amount"),
        _decimal(row["open_balance"], "open_balance") if row["open_balance"] else None,
    )
    return True


def load_csv(engine: Engine, path: Path) -> Loaded:
    """Load every row, or none of them."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        absent = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise LoadError([f"{path.name}: missing columns {', '.join(absent)}"])
        rows = [(n, {k: (v or "").strip() for k, v in r.items()}) for n, r in enumerate(reader, 2)]
    problems: list[str] = []
    customers: set[str] = set()
    invoices = 0
    with Session(engine) as session:
        for line, row in rows:
            try:
                with session.begin_nested():
                    invoices += _load_row(session, row)
                    customers.add(row["customer_id"])
            except (ValueError, BillingBusinessError) as exc:
                message = exc.message if isinstance(exc, BillingBusinessError) else str(exc)
                problems.append(f"{path.name}:{line}: {message}")
        if problems:
            session.rollback()
            raise LoadError(problems)
        session.commit()
    return Loaded(customers=len(customers), invoices=invoices)


# (id, name, currency, limit, [(invoice, days since issue, days until due, amount)])
DEMO_BOOK = [
    (
        "CUST-001",
        "Acme Retail SAS",
        "EUR",
        "50000.00",
        [("INV-1001", 45, -15, "12500.00"), ("INV-1002", 20, 10, "4200.00")],
    ),
    (
        "CUST-002",
        "Globex Trading Pte Ltd",
        "SGD",
        "80000.00",
        [("INV-2001", 70, -40, "30250.00"), ("INV-2002", 40, -10, "8800.00")],
    ),
    ("CUST-003", "Initech Inc", "USD", "25000.00", [("INV-3001", 10, 20, "9900.00")]),
    (
        "CUST-004",
        "Umbrella GmbH",
        "EUR",
        "100000.00",
        [("INV-4001", 95, -65, "41000.00"), ("INV-4002", 35, -5, "2300.00")],
    ),
    ("CUST-005", "Stark Industries KK", "JPY", "5000000.00", [("INV-5001", 30, 0, "750000.00")]),
    # Above its credit limit: what a limit-breach credit review sweep finds.
    ("CUST-006", "Wayne Trading Ltd", "GBP", "5000.00", [("INV-6001", 12, 18, "8200.00")]),
]
# Each demo customer's master data: (region = calendar, time zone, language).
DEMO_MASTER_DATA = {
    "CUST-001": ("FR", "Europe/Paris", "fr"),
    "CUST-002": ("SG", "Asia/Singapore", "en"),
    "CUST-003": ("US", "America/New_York", "en"),
    "CUST-004": ("DE", "Europe/Berlin", "de"),
    "CUST-005": ("JP", "Asia/Tokyo", "ja"),
    "CUST-006": ("GB", "Europe/London", "en"),
}


def seed_demo(engine: Engine, today: date) -> bool:
    """Fill an empty ledger with the demo book (ages relative to `today`); False if not empty."""
    with Session(engine) as session:
        if session.scalar(select(func.count()).select_from(CustomerRow)):
            return False
        for cid, name, currency, limit, items in DEMO_BOOK:
            email = f"ap@{cid.lower()}.example"
            region, zone, language = DEMO_MASTER_DATA[cid]
            ledger.put_customer(
                session,
                Customer(
                    id=cid,
                    name=name,
                    email=email,
                    currency=currency,
                    credit_limit=Decimal(limit),
                    region=region,
                    time_zone=zone,
                    language=language,
                ),
            )
            session.flush()
            for invoice_id, age, due_in, amount in items:
                issued = today - timedelta(days=age)
                due = today + timedelta(days=due_in)
                ledger.put_invoice(session, invoice_id, cid, issued, due, Decimal(amount))
        session.commit()
    return True
