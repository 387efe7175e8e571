"""The ledger's rules: reads and writes over the billing tables, refusing what a real ERP would.

Each function takes an open session and leaves committing to the caller, so a write and its
idempotency record land in one transaction.

Money never moves by read-then-write: requests run concurrently (a thread each), and two that
read one balance and each write back their own result lose one of the changes. A balance
changes in one conditional UPDATE (`open_cents = open_cents - :c WHERE open_cents >= :c`),
a limit by compare-and-set, and what must read a balance and decide on it locks the rows
first. Each holds on SQLite (one writer at a time) and PostgreSQL (row locks, READ COMMITTED).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from billing.contract import (
    BillingBusinessError,
    CreditHold,
    CreditLimit,
    CreditMemo,
    Customer,
    CustomerStanding,
    Exposure,
    Installment,
    Invoice,
    OverdueCustomer,
    PaymentPlan,
    PaymentStatus,
    PromiseToPay,
)
from billing.service.tables import (
    CENT,
    CreditMemoRow,
    CustomerRow,
    InvoiceRow,
    PaymentPlanRow,
    PaymentRow,
    PromiseToPayRow,
    from_cents,
    to_cents,
)
from domain.values import is_currency, is_id

# A compare-and-set only fails when another write landed in between; this many in a row
# means something is hammering one customer, and the caller hears it instead of waiting.
CAS_ATTEMPTS = 20

MAX_AMOUNT_DIGITS = 15


def refuse(code: str, message: str, status: int = 422) -> BillingBusinessError:
    return BillingBusinessError(code, message, status)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


def check_amount(amount: Decimal, name: str = "amount", *, allow_zero: bool = False) -> int:
    """The amount in cents; refused if negative (or zero) or finer than a cent."""
    if not amount.is_finite() or amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise refuse("invalid_amount", f"{name} {amount} must have at most two decimal places")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise refuse("invalid_amount", f"{name} must be {'≥' if allow_zero else '>'} 0")
    # Past 15 integer digits the cents overflow a 64-bit column (and quantize fails first).
    if amount.adjusted() >= MAX_AMOUNT_DIGITS:
        raise refuse("invalid_amount", f"{name} must be below 10^{MAX_AMOUNT_DIGITS}")
    return to_cents(amount.quantize(CENT))


def _customer_row(session: Session, customer_id: str, *, fresh: bool = False) -> CustomerRow:
    row = session.get(CustomerRow, customer_id, populate_existing=fresh)
    if row is None:
        raise refuse("customer_not_found", f"no customer {customer_id!r}", 404)
    return row


def _invoice_row(session: Session, invoice_id: str, *, fresh: bool = False) -> InvoiceRow:
    """The invoice; `fresh` reads it again (after an UPDATE statement changed it)."""
    row = session.get(InvoiceRow, invoice_id, populate_existing=fresh)
    if row is None:
        raise refuse("invoice_not_found", f"no invoice {invoice_id!r}", 404)
    return row


def _check_id(field: str, value: str) -> None:
    if not is_id(value):
        raise refuse("invalid_id", f"{field} {value!r} is not an id")


def _lock_invoices(session: Session, invoice_ids: list[str]) -> None:
    """Hold these invoices until commit, so what is read of them next stays true.

    A no-op UPDATE, because it locks on both databases: PostgreSQL locks the rows, SQLite
    takes its one write lock (`SELECT ... FOR UPDATE` would do nothing on SQLite).
    """
    session.execute(
        update(InvoiceRow)
        .where(InvoiceRow.id.in_(invoice_ids))
        .values(open_cents=InvoiceRow.open_cents)
        .execution_options(synchronize_session=False)
    )


def _take_from_balance(
    session: Session,
    invoice_id: str,
    cents: int,
    booked_to: InstrumentedAttribute[int],
    settled_on: date | None = None,
) -> bool:
    """Lower the open balance by `cents` in one statement, only if it covers them.

    `booked_to` is where the cents go (credited or paid); `settled_on` is recorded when the
    balance reaches zero (SET expressions read the row as it was before this UPDATE).
    """
    values: dict[object, object] = {
        InvoiceRow.open_cents: InvoiceRow.open_cents - cents,
        booked_to: booked_to + cents,
    }
    if settled_on is not None:
        values[InvoiceRow.settled_on] = case(
            (InvoiceRow.open_cents == cents, settled_on), else_=InvoiceRow.settled_on
        )
    applied = session.execute(
        update(InvoiceRow)
        .where(InvoiceRow.id == invoice_id, InvoiceRow.open_cents >= cents)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    return applied.rowcount == 1  # type: ignore[attr-defined]


def _above_balance(what: str, amount: Decimal, invoice: InvoiceRow) -> BillingBusinessError:
    if invoice.open_cents == 0:
        return refuse("invoice_closed", f"invoice {invoice.id} has no open balance", 409)
    return refuse(
        "amount_above_open_balance",
        f"{what} {amount} is above invoice {invoice.id}'s open balance "
        f"{from_cents(invoice.open_cents)}",
    )


def _days_past_due(row: InvoiceRow, as_of: date) -> int:
    return max(0, (as_of - row.due_on).days) if row.open_cents > 0 else 0


def _invoice(row: InvoiceRow, as_of: date) -> Invoice:
    status = "open" if row.open_cents > 0 else ("paid" if row.paid_cents else "credited")
    return Invoice(
        id=row.id,
        customer_id=row.customer_id,
        currency=row.currency,
        issued_on=row.issued_on,
        due_on=row.due_on,
        amount=from_cents(row.amount_cents),
        open_balance=from_cents(row.open_cents),
        status=status,
        days_past_due=_days_past_due(row, as_of),
    )


def _customer(row: CustomerRow) -> Customer:
    return Customer(
        id=row.id,
        name=row.name,
        email=row.email,
        currency=row.currency,
        credit_limit=from_cents(row.credit_limit_cents),
        on_hold=row.on_hold,
        hold_reason=row.hold_reason,
        region=row.region,
        time_zone=row.time_zone,
        language=row.language,
    )


def customer(session: Session, customer_id: str) -> Customer:
    return _customer(_customer_row(session, customer_id))


def customers(session: Session, over_limit_only: bool = False) -> list[CustomerStanding]:
    """Every customer with its open amount (those above their credit limit only, if asked)."""
    open_cents = (
        select(InvoiceRow.customer_id, func.sum(InvoiceRow.open_cents).label("open"))
        .group_by(InvoiceRow.customer_id)
        .subquery()
    )
    query = (
        select(CustomerRow, func.coalesce(open_cents.c.open, 0))
        .outerjoin(open_cents, open_cents.c.customer_id == CustomerRow.id)
        .order_by(CustomerRow.id)
    )
    standings = [
        CustomerStanding(
            **_customer(row).model_dump(),
            open_amount=from_cents(int(owed)),
            over_limit=int(owed) > row.credit_limit_cents,
        )
        for row, owed in session.execute(query)
    ]
    return [s for s in standings if s.over_limit or not over_limit_only]


def invoices(session: Session, invoice_ids: Iterable[str], as_of: date) -> list[Invoice]:
    return [_invoice(_invoice_row(session, i), as_of) for i in invoice_ids]


def _customer_invoices(session: Session, customer_id: str) -> list[InvoiceRow]:
    query = select(InvoiceRow).where(InvoiceRow.customer_id == customer_id)
    return list(session.scalars(query.order_by(InvoiceRow.due_on, InvoiceRow.id)))


def open_items(session: Session, customer_id: str, as_of: date) -> list[Invoice]:
    _customer_row(session, customer_id)
    rows = _customer_invoices(session, customer_id)
    return [_invoice(r, as_of) for r in rows if r.open_cents > 0]


def exposure(session: Session, customer_id: str, as_of: date) -> Exposure:
    cust = _customer_row(session, customer_id)
    rows = _customer_invoices(session, customer_id)
    open_rows = [r for r in rows if r.open_cents > 0]
    overdue = [r for r in open_rows if r.due_on < as_of]
    paid = [r for r in rows if r.settled_on is not None]
    late_days = [max(0, (r.settled_on - r.due_on).days) for r in paid if r.settled_on]
    open_cents = sum(r.open_cents for r in open_rows)
    return Exposure(
        customer_id=cust.id,
        as_of=as_of,
        currency=cust.currency,
        credit_limit=from_cents(cust.credit_limit_cents),
        on_hold=cust.on_hold,
        open_amount=from_cents(open_cents),
        overdue_amount=from_cents(sum(r.open_cents for r in overdue)),
        available_credit=from_cents(cust.credit_limit_cents - open_cents),
        max_days_past_due=max((_days_past_due(r, as_of) for r in open_rows), default=0),
        open_items=[_invoice(r, as_of) for r in open_rows],
        paid_invoices=len(paid),
        paid_late=sum(1 for d in late_days if d > 0),
        average_days_late=(
            (Decimal(sum(late_days)) / len(late_days)).quantize(Decimal("0.1"))
            if late_days
            else Decimal("0.0")
        ),
    )


def overdue_customers(session: Session, as_of: date, min_days: int = 1) -> list[OverdueCustomer]:
    """Customers with invoices at least `min_days` past due, the oldest debt first."""
    latest_due = as_of.toordinal() - min_days
    if latest_due < 1:
        return []  # nothing falls due before the first day of year 1
    query = (
        select(InvoiceRow)
        .where(
            InvoiceRow.open_cents > 0,
            InvoiceRow.due_on <= date.fromordinal(latest_due),
        )
        .order_by(InvoiceRow.customer_id, InvoiceRow.due_on, InvoiceRow.id)
    )
    by_customer: dict[str, list[InvoiceRow]] = {}
    for row in session.scalars(query):
        by_customer.setdefault(row.customer_id, []).append(row)
    lines = [
        OverdueCustomer(
            customer_id=cid,
            currency=rows[0].currency,
            overdue_amount=from_cents(sum(r.open_cents for r in rows)),
            max_days_past_due=max(_days_past_due(r, as_of) for r in rows),
            invoice_ids=[r.id for r in rows],
            **_contact_of(_customer_row(session, cid)),
        )
        for cid, rows in by_customer.items()
    ]
    return sorted(lines, key=lambda line: (-line.max_days_past_due, line.customer_id))


def _contact_of(row: CustomerRow) -> dict[str, str]:
    """The master data an overdue line carries, so each collection runs on its own calendar."""
    return {
        "email": row.email,
        "region": row.region,
        "time_zone": row.time_zone,
        "language": row.language,
    }


def payment_status(session: Session, invoice_ids: list[str]) -> PaymentStatus:
    rows = [_invoice_row(session, i) for i in invoice_ids]
    open_cents = sum(r.open_cents for r in rows)
    return PaymentStatus(
        invoice_ids=invoice_ids,
        open_balance=from_cents(open_cents),
        paid_amount=from_cents(sum(r.paid_cents for r in rows)),
        credited_amount=from_cents(sum(r.credited_cents for r in rows)),
        settled=open_cents == 0,
    )


def issue_credit_memo(
    session: Session,
    invoice_id: str,
    amount: Decimal,
    reason: str,
    now: datetime,
    customer_id: str,
    currency: str,
) -> CreditMemo:
    """Credit an invoice of `customer_id` in `currency` (the case's own, never the SOP's)."""
    invoice = _invoice_row(session, invoice_id)
    if invoice.customer_id != customer_id:
        raise refuse("invoice_not_of_customer", f"invoice {invoice_id} is not {customer_id}'s")
    if invoice.currency != currency:
        raise refuse(
            "currency_mismatch",
            f"invoice {invoice_id} is in {invoice.currency}, the credit memo in {currency}",
        )
    cents = check_amount(amount)
    if not _take_from_balance(session, invoice_id, cents, InvoiceRow.credited_cents):
        raise _above_balance("credit", amount, _invoice_row(session, invoice_id, fresh=True))
    invoice = _invoice_row(session, invoice_id, fresh=True)
    memo = CreditMemoRow(
        id=_new_id("CM"),
        invoice_id=invoice_id,
        amount_cents=cents,
        reason=reason,
        created_at=now,
    )
    session.add(memo)
    return CreditMemo(
        id=memo.id,
        invoice_id=invoice_id,
        amount=from_cents(cents),
        reason=reason,
        created_at=now,
        invoice_open_balance=from_cents(invoice.open_cents),
    )


def set_credit_hold(session: Session, customer_id: str, on: bool, reason: str) -> CreditHold:
    # One statement: flag and reason change together, whoever else writes the customer.
    changed = session.execute(
        update(CustomerRow)
        .where(CustomerRow.id == customer_id)
        .values(on_hold=on, hold_reason=reason if on else "")
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise refuse("customer_not_found", f"no customer {customer_id!r}", 404)
    return CreditHold(customer_id=customer_id, on_hold=on, reason=reason)


def update_credit_limit(session: Session, customer_id: str, new_limit: Decimal) -> CreditLimit:
    """Set the limit and answer the one it replaced (compare-and-set, so that is true)."""
    cents = check_amount(new_limit, "credit_limit", allow_zero=True)
    for _ in range(CAS_ATTEMPTS):
        previous = _customer_row(session, customer_id, fresh=True).credit_limit_cents
        swapped = session.execute(
            update(CustomerRow)
            .where(CustomerRow.id == customer_id, CustomerRow.credit_limit_cents == previous)
            .values(credit_limit_cents=cents)
            .execution_options(synchronize_session=False)
        )
        if swapped.rowcount == 1:  # type: ignore[attr-defined]
            return CreditLimit(
                customer_id=customer_id,
                credit_limit=from_cents(cents),
                previous_limit=from_cents(previous),
            )
    raise refuse("concurrent_update", f"customer {customer_id}'s limit keeps changing", 409)


def _customer_open_invoices(session: Session, customer_id: str, invoice_ids: list[str]) -> None:
    _customer_row(session, customer_id)
    if not invoice_ids:
        raise refuse("invalid_request", "invoice_ids must name at least one invoice")
    for invoice_id in invoice_ids:
        row = _invoice_row(session, invoice_id)
        if row.customer_id != customer_id:
            raise refuse("invoice_not_of_customer", f"invoice {invoice_id} is not {customer_id}'s")


def record_payment_plan(
    session: Session,
    customer_id: str,
    invoice_ids: list[str],
    installments: list[Installment],
    now: datetime,
) -> PaymentPlan:
    _customer_open_invoices(session, customer_id, invoice_ids)
    if not installments:
        raise refuse("invalid_request", "a payment plan needs at least one installment")
    for n, installment in enumerate(installments):
        check_amount(installment.amount, f"installments[{n}].amount")
    # The plan must cover the balance as it stands at commit, not as it stood a moment ago.
    _lock_invoices(session, invoice_ids)
    open_cents = sum(_invoice_row(session, i, fresh=True).open_cents for i in invoice_ids)
    planned = sum(to_cents(i.amount) for i in installments)
    if planned != open_cents:
        raise refuse(
            "plan_does_not_cover_balance",
            f"installments total {from_cents(planned)}, the open balance is "
            f"{from_cents(open_cents)}",
        )
    plan = PaymentPlanRow(
        id=_new_id("PP"),
        customer_id=customer_id,
        invoice_ids=invoice_ids,
        installments=[i.model_dump(mode="json") for i in installments],
        created_at=now,
    )
    session.add(plan)
    return PaymentPlan(
        id=plan.id,
        customer_id=customer_id,
        invoice_ids=invoice_ids,
        installments=installments,
        created_at=now,
    )


def record_promise_to_pay(
    session: Session,
    customer_id: str,
    invoice_ids: list[str],
    promised_on: date,
    amount: Decimal,
    now: datetime,
) -> PromiseToPay:
    _customer_open_invoices(session, customer_id, invoice_ids)
    promise = PromiseToPayRow(
        id=_new_id("PTP"),
        customer_id=customer_id,
        invoice_ids=invoice_ids,
        promised_on=promised_on,
        amount_cents=check_amount(amount),
        created_at=now,
    )
    session.add(promise)
    return PromiseToPay(
        id=promise.id,
        customer_id=customer_id,
        invoice_ids=invoice_ids,
        promised_on=promised_on,
        amount=amount,
        created_at=now,
    )


def record_payment(
    session: Session, invoice_id: str, amount: Decimal, received_on: date, reference: str
) -> Invoice:
    """Cash received against an invoice (the bank feed of a real ERP)."""
    _invoice_row(session, invoice_id)
    cents = check_amount(amount)
    if not _take_from_balance(session, invoice_id, cents, InvoiceRow.paid_cents, received_on):
        raise _above_balance("payment", amount, _invoice_row(session, invoice_id, fresh=True))
    invoice = _invoice_row(session, invoice_id, fresh=True)
    session.add(
        PaymentRow(
            invoice_id=invoice_id, amount_cents=cents, received_on=received_on, reference=reference
        )
    )
    return _invoice(invoice, received_on)


def put_customer(session: Session, value: Customer) -> Customer:
    """Create or replace a customer's master data (loading, not a Casebook operation).

    A hold is not master data: reloading a customer keeps the one billing has set, so a load
    can never release a credit hold that a case put on.
    """
    _check_id("customer_id", value.id)
    if not is_currency(value.currency):
        raise refuse("invalid_currency", f"currency {value.currency!r} is not an ISO 4217 code")
    row = session.get(CustomerRow, value.id)
    if row is None:
        row = CustomerRow(id=value.id, on_hold=value.on_hold, hold_reason=value.hold_reason)
    row.name, row.email, row.currency = value.name, value.email, value.currency
    row.region, row.time_zone, row.language = _master_data(value)
    row.credit_limit_cents = check_amount(value.credit_limit, "credit_limit", allow_zero=True)
    session.add(row)
    return _customer(row)


REGION_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _master_data(value: Customer) -> tuple[str, str, str]:
    """Region, time zone and language, each empty or well formed."""
    if value.region and not REGION_PATTERN.match(value.region):
        raise refuse("invalid_region", f"region {value.region!r} is not a region code")
    if value.time_zone and not _is_zone(value.time_zone):
        raise refuse("invalid_time_zone", f"time_zone {value.time_zone!r} is not an IANA zone")
    if value.language and not LANGUAGE_PATTERN.match(value.language):
        raise refuse("invalid_language", f"language {value.language!r} is not a language tag")
    return value.region, value.time_zone, value.language


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def put_invoice(
    session: Session,
    invoice_id: str,
    customer_id: str,
    issued_on: date,
    due_on: date,
    amount: Decimal,
    open_balance: Decimal | None = None,
) -> Invoice:
    """Create an invoice, or update one nothing has been applied to yet (loading)."""
    _check_id("invoice_id", invoice_id)
    cust = _customer_row(session, customer_id)
    cents = check_amount(amount)
    open_cents = (
        cents
        if open_balance is None
        else check_amount(open_balance, "open_balance", allow_zero=True)
    )
    if open_cents > cents:
        raise refuse("invalid_amount", "open_balance is above the invoice amount")
    if due_on < issued_on:
        raise refuse("invalid_request", f"invoice {invoice_id} is due before it is issued")
    values = {
        "customer_id": customer_id,
        "currency": cust.currency,
        "issued_on": issued_on,
        "due_on": due_on,
        "amount_cents": cents,
        "open_cents": open_cents,
        # Loaded partly paid: what was paid before Casebook knew the invoice.
        "paid_cents": cents - open_cents,
        "credited_cents": 0,
        "settled_on": due_on if open_cents == 0 else None,
    }
    if session.get(InvoiceRow, invoice_id) is None:
        row = InvoiceRow(id=invoice_id, **values)
        session.add(row)
        return _invoice(row, issued_on)
    # Replaced only while nothing is applied, checked in the UPDATE itself: a credit memo
    # landing between a read and this write would otherwise be wiped out.
    replaced = session.execute(
        update(InvoiceRow)
        .where(
            InvoiceRow.id == invoice_id, InvoiceRow.paid_cents == 0, InvoiceRow.credited_cents == 0
        )
        .values(values)
        .execution_options(synchronize_session=False)
    )
    if replaced.rowcount != 1:  # type: ignore[attr-defined]
        raise refuse(
            "invoice_has_activity", f"invoice {invoice_id} already has payments or credits", 409
        )
    return _invoice(_invoice_row(session, invoice_id, fresh=True), issued_on)
