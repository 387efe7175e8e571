"""DSO, CEI and average days delinquent from the ledger's receivables over a period.

The formulas as finance teams write them (shared/DOMAIN.md):
  DSO              = closing AR / credit sales * days in the period
  best-possible DSO = closing current AR / credit sales * days
  ADD              = DSO - best-possible DSO
  CEI              = (opening AR + credit sales / months - closing AR)
                     / (opening AR + credit sales / months - closing current AR) * 100
  promise kept rate = promises kept in full by date + tolerance / promises that fell due
A period without credit sales has no DSO (None), and a CEI with a zero denominator none.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billing.contract import BillingSystem, Receivables

TWO = Decimal("0.01")


def measures(r: Receivables, months: int) -> dict[str, object]:
    """The ledger KPIs of one currency and period (`months` the period spans, for CEI)."""
    dso = best = add = cei = None
    if r.credit_sales > 0:
        dso = r.closing_ar / r.credit_sales * r.days
        best = r.closing_current_ar / r.credit_sales * r.days
        add = dso - best
    monthly_sales = r.credit_sales / months
    denominator = r.opening_ar + monthly_sales - r.closing_current_ar
    if denominator != 0:
        cei = (r.opening_ar + monthly_sales - r.closing_ar) / denominator * 100
    return {
        "currency": r.currency,
        "start": r.start.isoformat(),
        "end": r.end.isoformat(),
        "opening_ar": str(r.opening_ar),
        "closing_ar": str(r.closing_ar),
        "closing_current_ar": str(r.closing_current_ar),
        "credit_sales": str(r.credit_sales),
        "collected": str(r.collected),
        "credited": str(r.credited),
        "promises_due": r.promises_due,
        "promises_kept": r.promises_kept,
        "promise_kept_rate": round(r.promises_kept / r.promises_due, 4) if r.promises_due else None,
        "dso": _round(dso),
        "best_possible_dso": _round(best),
        "average_days_delinquent": _round(add),
        "cei": _round(cei),
    }


def _round(value: Decimal | None) -> str | None:
    return str(value.quantize(TWO)) if value is not None else None


async def ledger_measures(
    billing: BillingSystem, currency: str, start: date, end: date, months: int
) -> dict[str, object]:
    return measures(await billing.receivables(currency, start, end), months)
