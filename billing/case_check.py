"""Does a case agree with billing? Its customer exists, each invoice exists, is the customer's
and is in the case's currency, and a region the case gives is the customer's.

One check for the two places that ask: intake (`api/services/intake.py`, a 422 naming each
wrong field) and, when billing was down at intake, the case's first step (the `verify_case`
billing action, whose refusal becomes a task for a person like any billing refusal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from billing.contract import BillingBusinessError, BillingSystem, Customer, Invoice

CASE_MISMATCH = "case_mismatch"


@dataclass(frozen=True)
class Mismatch:
    field: str  # the request's field path, e.g. invoice_ids[1]
    value: str
    message: str


class CaseMismatchError(BillingBusinessError):
    """The case's data contradicts billing: each problem names its field and value."""

    def __init__(self, problems: list[Mismatch]) -> None:
        super().__init__(CASE_MISMATCH, "; ".join(p.message for p in problems), 422)
        self.problems = problems


@dataclass(frozen=True)
class CaseFacts:
    """What a case says about billing's records; None where the request left it out."""

    customer_id: str
    invoice_ids: list[str]
    currency: str | None = None
    region: str | None = None


async def check_case(billing: BillingSystem, facts: CaseFacts, as_of: date) -> Customer:
    """Billing's customer, when the case agrees with billing; else `CaseMismatchError`.
    Outages (`BillingUnavailableError`) propagate: the caller decides what waiting means."""
    customer = await _customer(billing, facts.customer_id)
    if customer is None:
        raise CaseMismatchError(
            [
                Mismatch(
                    "customer_id",
                    facts.customer_id,
                    f"customer_id: {facts.customer_id!r} is not a customer in billing",
                )
            ]
        )
    currency = facts.currency or customer.currency
    problems = [*_master_data_problems(facts, customer)]
    for n, invoice_id in enumerate(facts.invoice_ids):
        invoice = await _invoice(billing, invoice_id, as_of)
        problems += _invoice_problems(f"invoice_ids[{n}]", invoice_id, invoice, customer, currency)
    if problems:
        raise CaseMismatchError(problems)
    return customer


def _master_data_problems(facts: CaseFacts, customer: Customer) -> list[Mismatch]:
    problems = []
    if facts.region and customer.region and facts.region != customer.region:
        problems.append(
            Mismatch(
                "region",
                facts.region,
                f"region: {facts.region!r} is not {customer.id}'s region in billing "
                f"({customer.region!r}); leave it out to take billing's",
            )
        )
    if facts.currency and not facts.invoice_ids and facts.currency != customer.currency:
        # Without invoices the case's money is in the customer's own currency.
        problems.append(
            Mismatch(
                "currency",
                facts.currency,
                f"currency: {facts.currency!r} is not {customer.id}'s currency in billing "
                f"({customer.currency!r})",
            )
        )
    return problems


def _invoice_problems(
    field: str, invoice_id: str, invoice: Invoice | None, customer: Customer, currency: str
) -> list[Mismatch]:
    if invoice is None:
        return [
            Mismatch(field, invoice_id, f"{field}: {invoice_id!r} is not an invoice in billing")
        ]
    problems = []
    if invoice.customer_id != customer.id:
        problems.append(
            Mismatch(
                field,
                invoice_id,
                f"{field}: {invoice_id!r} is an invoice of {invoice.customer_id!r}, "
                f"not of {customer.id!r}",
            )
        )
    if invoice.currency != currency:
        problems.append(
            Mismatch(
                field,
                invoice_id,
                f"{field}: {invoice_id!r} is in {invoice.currency}, the case in {currency}",
            )
        )
    return problems


async def _customer(billing: BillingSystem, customer_id: str) -> Customer | None:
    try:
        return await billing.customer(customer_id)
    except BillingBusinessError as exc:
        if exc.status == 404:
            return None
        raise


async def _invoice(billing: BillingSystem, invoice_id: str, as_of: date) -> Invoice | None:
    # One at a time: billing answers 404 for a whole listing with one unknown id, and the
    # request's field path must name which one.
    try:
        (invoice,) = await billing.get_invoices([invoice_id], as_of)
    except BillingBusinessError as exc:
        if exc.status == 404:
            return None
        raise
    return invoice
