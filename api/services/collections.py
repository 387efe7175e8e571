"""The overdue scan: one collection case per customer with overdue invoices, never two.

The case id is derived from the debt (the customer and its oldest overdue invoice); see
`api/services/sweeps.py` for how reruns and racing scans stay single. Each case runs on its
customer's region (calendar) from billing's master data; the scan's `region` is only the
fallback for customers billing has no region for.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from api.deps import Services
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
from billing.contract import OverdueCustomer
from domain.case_models import Actor


async def scan_overdue(
    svc: Services,
    actor: Actor,
    region: str | None,
    as_of: date | None,
    min_days: int,
    vendors: VendorChoice,
) -> list[SweepLine]:
    if region is not None:
        check_region(region)
    check_vendors(actor, vendors)
    async with billing_of(svc) as billing:
        overdue = await billing.overdue_customers(as_of or datetime.now(UTC).date(), min_days)
    results = [skipped(record) for record in overdue.malformed]
    for line in overdue.records:
        if not line.invoice_ids:  # disputed items are out of dunning until the dispute ends
            results.append(SweepLine(line.customer_id, "in_dispute", reason=_left_out(line)))
            continue
        body = case_body_or_skip(
            line.customer_id,
            type="collection",
            invoice_ids=line.invoice_ids,
            amount=str(line.overdue_amount),
            currency=line.currency,
            region=line.region or region,
            vendor=vendors.of(line.customer_id),
            reason_code="overdue",
            data={"contact": line.email, "max_days_past_due": line.max_days_past_due},
        )
        if isinstance(body, SweepLine):
            results.append(body)
            continue
        case_id = derived_case_id("collection", line.customer_id, line.invoice_ids[0])
        results.append(await open_once(svc, actor, body, case_id))
    return results


def _left_out(line: OverdueCustomer) -> str:
    items = ", ".join(f"{d.invoice_id} (dispute {d.dispute_id})" for d in line.disputed)
    return f"every overdue invoice is in an open dispute: {items}"
