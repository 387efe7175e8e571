"""Money controls: what must hold before a billing call goes out. Pure, deterministic code.

- The case's own customer and invoices: a billing arg `customer_id` must be the case's
  customer, an `invoice_id` (or each of `invoice_ids`) one of the case's invoices; else a
  person gets the error, and billing is never called.
- An SOP's approval rule (`approval:` on a money-moving billing step): above its threshold,
  the amount actually sent must be what an approver approved, in the latest human decision
  on the case. An approval is recorded (`approval_granted`) when the approval task is
  completed with `approve`, with the amount the billing step would send at that moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from access.policy import Action, roles_allowed
from domain.case_models import CaseSnapshot, HistoryEntry
from domain.values import is_amount_text
from sop_templates.schema import BillingStep, SopTemplate

# Who may approve money above an SOP's threshold: the policy's approvers (the lead board).
APPROVER_ROLES = frozenset(roles_allowed(Action.APPROVE))
APPROVAL_GRANTED = "approval_granted"
APPROVAL_REQUIRED = "approval_required"


def case_scope_error(case: CaseSnapshot, args: Mapping[str, Any]) -> dict[str, Any] | None:
    """Why this call would touch another customer's account or an invoice not on the case;
    None when it stays on the case. The error has billing's shape (code, message, status)."""
    customer = args.get("customer_id")
    if customer is not None and customer != case.customer_id:
        return _error(
            "customer_not_on_case",
            f"customer_id {customer!r} is not the case's customer {case.customer_id!r}",
        )
    invoices = [args["invoice_id"]] if "invoice_id" in args else []
    if isinstance(args.get("invoice_ids"), list | tuple):
        invoices += list(args["invoice_ids"])
    for invoice in invoices:
        if invoice not in case.invoice_ids:
            return _error(
                "invoice_not_on_case",
                f"invoice {invoice!r} is not one of the case's invoices "
                f"({', '.join(case.invoice_ids)})",
            )
    return None


def money(value: Any) -> Decimal:
    """A billing amount from an evaluated arg: ValueError unless an ASCII decimal (zero
    included: a credit limit may be set to nothing; billing judges the rest)."""
    text = _as_text(value)
    if text is None or not is_amount_text(text):
        raise ValueError(f"{value!r} is not a decimal amount")
    return Decimal(text)


def _as_text(value: Any) -> str | None:
    """Amounts travel as text; an expression may also give an int or a Decimal (never a
    float or a bool: neither is money)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | str):
        return str(value)
    return None


def threshold(value: Any) -> Decimal:
    try:
        above = Decimal(str(value))
    except InvalidOperation:
        above = Decimal("NaN")
    if isinstance(value, bool) or not above.is_finite():  # NaN would fail every comparison
        raise ValueError(f"approval threshold {value!r} is not a number")
    return above


def amount_error(step: BillingStep, exc: ValueError) -> dict[str, Any]:
    assert step.approval is not None
    return _error("invalid_amount", f"{step.approval.amount}: {exc}")


def approval_steps_of(template: SopTemplate, step_id: str) -> list[BillingStep]:
    """The billing steps whose approval rule names task step `step_id`."""
    return [
        s
        for s in template.steps
        if isinstance(s, BillingStep) and s.approval is not None and s.approval.step == step_id
    ]


def is_approved(case: CaseSnapshot, step: BillingStep, amount: Decimal) -> bool:
    """Whether the latest human decision on the case approves `step` for exactly `amount`."""
    decision = _latest_decision(case)
    if decision is None or decision.outcome != "approve":
        return False
    granted = next(
        (
            h
            for h in reversed(case.history)
            if h.event == APPROVAL_GRANTED
            and h.task_id == decision.task_id
            and h.detail.get("billing_step") == step.id
        ),
        None,
    )
    if granted is None or granted.detail.get("role") not in APPROVER_ROLES:
        return False
    try:
        return money(granted.detail.get("amount")) == amount
    except ValueError:
        return False


def _latest_decision(case: CaseSnapshot) -> HistoryEntry | None:
    return next((h for h in reversed(case.history) if h.event == "task_completed"), None)


def _error(code: str, message: str) -> dict[str, Any]:
    # status 0: Casebook refused it before billing was asked (as for bad arguments).
    return {"code": code, "message": message, "status": 0}
