"""The BillingSystem port: the operations Casebook needs from a billing system (an ERP).

Amounts are `Decimal` with at most two decimal places, carried as strings in JSON. Customer
and invoice ids match `domain.values.ID_PATTERN`; anything else is refused before it is sent.
Every mutating call takes an idempotency key: the same key with the same request returns the
first answer and changes nothing; the same key with a different request is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field

InvoiceStatus = Literal["open", "paid", "credited"]
T = TypeVar("T")


class BillingBusinessError(Exception):
    """The billing system refused the request (4xx): retrying the same call cannot help."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class BillingUnavailableError(Exception):
    """The billing system could not answer (5xx, timeout, refused connection): retry later."""


class Customer(BaseModel):
    """A customer and its master data: `email` is its contact address; `region` names the
    business calendar its cases count SLAs on (escalations/calendars.yaml), `time_zone` is
    an IANA zone and `language` a BCP 47 tag its emails are written in ("" when unknown)."""

    id: str
    name: str
    email: str = ""
    currency: str
    credit_limit: Decimal
    on_hold: bool = False
    hold_reason: str = ""
    region: str = ""
    time_zone: str = ""
    language: str = ""


class CustomerStanding(Customer):
    """A customer with what it owes now: the input of credit review sweeps."""

    open_amount: Decimal
    over_limit: bool


class Invoice(BaseModel):
    id: str
    customer_id: str
    currency: str
    issued_on: date
    due_on: date
    amount: Decimal
    open_balance: Decimal
    status: InvoiceStatus
    days_past_due: int = Field(0, description="Days after due_on as of the request, 0 if paid")


class Exposure(BaseModel):
    """What a customer owes and how they pay: the input of collections and credit reviews."""

    customer_id: str
    as_of: date
    currency: str
    credit_limit: Decimal
    on_hold: bool
    open_amount: Decimal
    overdue_amount: Decimal
    available_credit: Decimal
    max_days_past_due: int
    open_items: list[Invoice]
    paid_invoices: int = Field(description="Invoices paid in full so far")
    paid_late: int = Field(description="Of those, paid after their due date")
    average_days_late: Decimal = Field(description="Mean days after due date over paid invoices")


class OverdueCustomer(BaseModel):
    """One line of the overdue scan: a customer and the invoices past due."""

    customer_id: str
    currency: str
    overdue_amount: Decimal
    max_days_past_due: int
    invoice_ids: list[str]
    email: str = ""
    # The customer's master data (see `Customer`): each case on its own calendar.
    region: str = ""
    time_zone: str = ""
    language: str = ""


class CreditMemo(BaseModel):
    id: str
    invoice_id: str
    amount: Decimal
    reason: str
    created_at: datetime
    invoice_open_balance: Decimal = Field(description="The invoice's open balance after it")


class CreditHold(BaseModel):
    customer_id: str
    on_hold: bool
    reason: str


class CreditLimit(BaseModel):
    customer_id: str
    credit_limit: Decimal
    previous_limit: Decimal


class Installment(BaseModel):
    due_on: date
    amount: Decimal


class PaymentPlan(BaseModel):
    id: str
    customer_id: str
    invoice_ids: list[str]
    installments: list[Installment]
    created_at: datetime


class PromiseToPay(BaseModel):
    id: str
    customer_id: str
    invoice_ids: list[str]
    promised_on: date
    amount: Decimal
    created_at: datetime


class PaymentStatus(BaseModel):
    """Whether the given invoices are settled: what a collection case closes on."""

    invoice_ids: list[str]
    open_balance: Decimal
    paid_amount: Decimal
    credited_amount: Decimal
    settled: bool


class MalformedRecord(BaseModel):
    """A listing record Casebook cannot take (a bad id, currency or shape): reported, skipped."""

    customer_id: str  # as the record gave it, "" when it gave none
    reason: str


@dataclass(frozen=True)
class Listing(Generic[T]):
    """A listing's usable records, and the ones that were not (one bad record never hides
    the others, nor fails the sweep reading them)."""

    records: list[T]
    malformed: list[MalformedRecord]


class BillingSystem(Protocol):
    """What Casebook's activities call. Reads are safe to retry; writes carry a key."""

    async def get_invoices(self, invoice_ids: list[str], as_of: date) -> list[Invoice]: ...

    async def customer(self, customer_id: str) -> Customer: ...

    async def customers(self, over_limit_only: bool = False) -> Listing[CustomerStanding]: ...

    async def customer_exposure(self, customer_id: str, as_of: date) -> Exposure: ...

    async def overdue_customers(
        self, as_of: date, min_days: int = 1
    ) -> Listing[OverdueCustomer]: ...

    async def payment_status(self, invoice_ids: list[str]) -> PaymentStatus: ...

    async def issue_credit_memo(
        self,
        invoice_id: str,
        amount: Decimal,
        reason: str,
        idempotency_key: str,
        *,
        customer_id: str,
        currency: str,
    ) -> CreditMemo:
        """Credit `invoice_id`, which must be `customer_id`'s and in `currency` (the case's)."""
        ...

    async def set_credit_hold(
        self, customer_id: str, on: bool, reason: str, idempotency_key: str
    ) -> CreditHold: ...

    async def update_credit_limit(
        self, customer_id: str, new_limit: Decimal, idempotency_key: str
    ) -> CreditLimit: ...

    async def record_payment_plan(
        self,
        customer_id: str,
        invoice_ids: list[str],
        installments: list[Installment],
        idempotency_key: str,
    ) -> PaymentPlan: ...

    async def record_promise_to_pay(
        self,
        customer_id: str,
        invoice_ids: list[str],
        promised_on: date,
        amount: Decimal,
        idempotency_key: str,
    ) -> PromiseToPay: ...
