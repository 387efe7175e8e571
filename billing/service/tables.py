"""The ledger's own tables. Money is stored in integer cents: exact on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

CENT = Decimal("0.01")


def to_cents(amount: Decimal) -> int:
    return int((amount / CENT).to_integral_exact())


def from_cents(cents: int) -> Decimal:
    return (Decimal(cents) * CENT).quantize(CENT)


class Base(DeclarativeBase):
    pass


class CustomerRow(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(200), default="")
    currency: Mapped[str] = mapped_column(String(3))
    credit_limit_cents: Mapped[int] = mapped_column(BigInteger)
    on_hold: Mapped[bool] = mapped_column(default=False)
    hold_reason: Mapped[str] = mapped_column(String(500), default="")
    # Master data (billing/contract.py `Customer`); "" when billing does not know it.
    region: Mapped[str] = mapped_column(String(16), default="")
    time_zone: Mapped[str] = mapped_column(String(64), default="")
    language: Mapped[str] = mapped_column(String(35), default="")


class InvoiceRow(Base):
    __tablename__ = "invoices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    issued_on: Mapped[date]
    due_on: Mapped[date] = mapped_column(index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    open_cents: Mapped[int] = mapped_column(BigInteger)
    credited_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # When the balance reached zero by payment: how late the customer paid.
    settled_on: Mapped[date | None] = mapped_column(default=None)


class PaymentRow(Base):
    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    received_on: Mapped[date]
    reference: Mapped[str] = mapped_column(String(200), default="")


class CreditMemoRow(Base):
    __tablename__ = "credit_memos"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime]


class PromiseToPayRow(Base):
    __tablename__ = "promises_to_pay"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    invoice_ids: Mapped[list[str]] = mapped_column(JSON)
    promised_on: Mapped[date]
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class PaymentPlanRow(Base):
    __tablename__ = "payment_plans"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    invoice_ids: Mapped[list[str]] = mapped_column(JSON)
    # [{"due_on": "2026-12-01", "amount": "100.00"}, ...]
    installments: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class IdempotencyRow(Base):
    """The first answer to each idempotency key, so a retried write changes nothing."""

    __tablename__ = "idempotency_keys"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    operation: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime]
