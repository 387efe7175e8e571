"""Credit review sweeps: a periodic review of every customer, or a review of each customer
whose exposure is above its credit limit. One case per customer and period (or per day of
breach); see `api/services/sweeps.py` for how reruns stay single.

Run them from a scheduler (cron, a Temporal Schedule, the ERP's job runner) with a `lead`,
`admin` or `system` token.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

from api.deps import Services
from api.schemas import CaseCreate
from api.services.sweeps import (
    SweepLine,
    VendorChoice,
    billing_of,
    case_body_or_skip,
    check_region,
    check_vendors,
    derived_case_id,
    open_once,
    skipped,
)
from billing.contract import CustomerStanding
from domain.case_models import Actor

SweepReason = Literal["periodic", "limit_breach"]


def default_period(reason: SweepReason, as_of: date) -> str:
    """Periodic reviews are quarterly; a limit breach is looked at once a day at most."""
    if reason == "periodic":
        return f"{as_of.year}Q{(as_of.month - 1) // 3 + 1}"
    return as_of.isoformat()


def _review(
    c: CustomerStanding, reason: SweepReason, region: str | None, vendor: str | None
) -> CaseCreate | SweepLine | None:
    """The review to open: the case amount is the limit in question (the current one, or
    what the customer owes when above it); nothing to review without either."""
    limit_in_question = c.open_amount if reason == "limit_breach" else c.credit_limit
    if limit_in_question <= 0:
        return None
    return case_body_or_skip(
        c.id,
        type="credit_review",
        amount=str(limit_in_question),
        currency=c.currency,
        region=c.region or region,  # the customer's calendar; the sweep's is the fallback
        vendor=vendor,
        reason_code=reason,
        data={"contact": c.email},
    )


async def sweep_credit_reviews(
    svc: Services,
    actor: Actor,
    region: str | None,
    reason: SweepReason,
    period: str | None,
    as_of: date | None,
    vendors: VendorChoice,
) -> list[SweepLine]:
    if region is not None:
        check_region(region)
    check_vendors(actor, vendors)
    about = f"{reason}-{period or default_period(reason, as_of or datetime.now(UTC).date())}"
    async with billing_of(svc) as billing:
        customers = await billing.customers(over_limit_only=reason == "limit_breach")
    results = [skipped(record) for record in customers.malformed]
    for customer in customers.records:
        body = _review(customer, reason, region, vendors.of(customer.id))
        if isinstance(body, SweepLine):
            results.append(body)
        elif body is not None:
            case_id = derived_case_id("credit_review", customer.id, about)
            results.append(await open_once(svc, actor, body, case_id))
    return results
