"""The ledger's receivables over a period: what DSO, CEI and average days delinquent need.

Balances are rebuilt as of a day from the dated facts (invoices by issue date, payments by
the day received, credit memos by the day issued), so a report on last quarter reads last
quarter's ledger, not today's balances.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.contract import Receivables
from billing.service.ledger import refuse
from billing.service.tables import (
    CreditMemoRow,
    InvoiceRow,
    PaymentRow,
    PromiseToPayRow,
    from_cents,
)
from domain.values import is_currency

# Days after its date a promise to pay may still be kept (the shipped collection SOP waits
# as long before it checks).
PROMISE_TOLERANCE_DAYS = 2


def receivables(session: Session, currency: str, start: date, end: date) -> Receivables:
    """AR at the opening of `start` and the close of `end` (inclusive), and the period's
    credit sales, cash collected and credits, in `currency`."""
    if not is_currency(currency):
        raise refuse("invalid_currency", f"currency: {currency!r} is not an ISO 4217 code")
    if end < start:
        raise refuse("invalid_period", f"end: {end} is before start {start}")
    # The opening balance is the close of the day before (none before the first day).
    before = start - timedelta(days=1) if start > date.min else None
    return Receivables(
        currency=currency,
        start=start,
        end=end,
        days=(end - start).days + 1,
        opening_ar=from_cents(_open_cents(session, currency, before) if before else 0),
        closing_ar=from_cents(_open_cents(session, currency, end)),
        closing_current_ar=from_cents(_open_cents(session, currency, end, not_due_after=end)),
        credit_sales=from_cents(_issued_cents(session, currency, start, end)),
        collected=from_cents(_paid_cents(session, currency, start, end)),
        credited=from_cents(_credited_cents(session, currency, start, end)),
        **_promises(session, currency, start, end),
    )


def _promises(session: Session, currency: str, start: date, end: date) -> dict[str, int]:
    """Promises whose date plus the tolerance fell in the period, and those kept in full:
    payments on their invoices, from the promise until that day, reach the amount."""
    tolerance = timedelta(days=PROMISE_TOLERANCE_DAYS)
    due = [
        p
        for p in session.scalars(select(PromiseToPayRow))
        if start <= p.promised_on + tolerance <= end
    ]
    kept = 0
    for promise in due:
        paid = session.execute(
            select(func.coalesce(func.sum(PaymentRow.amount_cents), 0))
            .join(InvoiceRow, InvoiceRow.id == PaymentRow.invoice_id)
            .where(
                PaymentRow.invoice_id.in_(promise.invoice_ids),
                InvoiceRow.currency == currency,
                PaymentRow.received_on.between(
                    promise.created_at.date(), promise.promised_on + tolerance
                ),
            )
        ).scalar_one()
        kept += int(paid) >= promise.amount_cents
    return {"promises_due": len(due), "promises_kept": kept}


def _open_cents(
    session: Session, currency: str, as_of: date, not_due_after: date | None = None
) -> int:
    """What invoices issued by `as_of` still owed at its close (only those not yet due on
    `not_due_after`, when given: the current receivables)."""
    invoices = select(InvoiceRow.id, InvoiceRow.amount_cents).where(
        InvoiceRow.currency == currency, InvoiceRow.issued_on <= as_of
    )
    if not_due_after is not None:
        invoices = invoices.where(InvoiceRow.due_on >= not_due_after)
    rows = session.execute(invoices).all()
    if not rows:
        return 0
    ids = [r.id for r in rows]
    paid = session.execute(
        select(func.coalesce(func.sum(PaymentRow.amount_cents), 0)).where(
            PaymentRow.invoice_id.in_(ids), PaymentRow.received_on <= as_of
        )
    ).scalar_one()
    credited = sum(
        memo.amount_cents
        for memo in session.scalars(select(CreditMemoRow).where(CreditMemoRow.invoice_id.in_(ids)))
        if memo.created_at.date() <= as_of
    )
    return sum(r.amount_cents for r in rows) - int(paid) - credited


def _issued_cents(session: Session, currency: str, start: date, end: date) -> int:
    query = select(func.coalesce(func.sum(InvoiceRow.amount_cents), 0)).where(
        InvoiceRow.currency == currency, InvoiceRow.issued_on.between(start, end)
    )
    return int(session.execute(query).scalar_one())


def _paid_cents(session: Session, currency: str, start: date, end: date) -> int:
    query = (
        select(func.coalesce(func.sum(PaymentRow.amount_cents), 0))
        .join(InvoiceRow, InvoiceRow.id == PaymentRow.invoice_id)
        .where(InvoiceRow.currency == currency, PaymentRow.received_on.between(start, end))
    )
    return int(session.execute(query).scalar_one())


def _credited_cents(session: Session, currency: str, start: date, end: date) -> int:
    query = (
        select(CreditMemoRow)
        .join(InvoiceRow, InvoiceRow.id == CreditMemoRow.invoice_id)
        .where(InvoiceRow.currency == currency)
    )
    return sum(
        m.amount_cents for m in session.scalars(query) if start <= m.created_at.date() <= end
    )
