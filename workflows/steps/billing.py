"""`billing`: a call to the billing system, held to the case's customer and invoices and to
the SOP's approval rule first; a refusal (a business error) becomes a task for a person."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.case_models import BILLING_ERROR, BILLING_REFUSED, CaseSnapshot, CompleteTask, Task
from sop_templates.schema import BillingStep, SopTemplate
from workflows import dunning, money_rules
from workflows.case_core import (
    ERROR_OUTCOMES,
    Move,
    evaluate,
    last_completed_task,
    open_error_task,
    record,
)
from workflows.steps.base import StepKind, pend


def enter(
    case: CaseSnapshot, template: SopTemplate, step: BillingStep, now: datetime, last: Task | None
) -> None:
    pend(case, step)


def after(step: BillingStep) -> str:
    return step.next


def done(
    case: CaseSnapshot,
    template: SopTemplate,
    step: BillingStep,
    result: dict[str, Any],
    now: datetime,
) -> Move:
    """The call went through: keep what it returned (`store_as`) and go on."""
    case.pending_action = None
    if step.store_as:
        before = case.data.get(step.store_as)
        case.data = {**case.data, step.store_as: result}
    record(case, now, "billing_done", step=step.id, detail=result)
    if step.store_as and step.action == "get_exposure":
        # Why the next notice names other invoices than the last: a dispute opened or closed.
        for event, detail in dunning.changes(before, result):
            record(case, now, event, step=step.id, detail=detail)
    return Move(step.next, last_completed_task(case))


def completed(
    case: CaseSnapshot,
    template: SopTemplate,
    step: BillingStep,
    task: Task,
    cmd: CompleteTask,
    now: datetime,
) -> Move:
    """A person decided what to do about billing's refusal: call again, or go on."""
    target = step.id if cmd.outcome == "retry" else step.next
    if step.retry_store_as and cmd.outcome == "retry":
        case.data = {**case.data, step.retry_store_as: cmd.data}
    return Move(target, task)


def check_call(
    case: CaseSnapshot,
    template: SopTemplate,
    step: BillingStep,
    args: dict[str, Any],
    now: datetime,
) -> tuple[bool, Move | None]:
    """Whether the pending call may go out with these `args` (the values it would send),
    and if not, where the case goes instead: to a person with the error (another customer's
    account, an invoice not on the case, no valid amount; no move), or into the approval step."""
    assert case.pending_action is not None and case.pending_action.step == step.id
    error = money_rules.case_scope_error(case, args)
    if error is None and step.approval is not None:
        try:
            amount = money_rules.money(args.get(step.approval.amount))
            above = money_rules.threshold(evaluate(case, template, step.approval.above))
        except ValueError as exc:
            error = money_rules.amount_error(step, exc)
        else:
            if amount > above and not money_rules.is_approved(case, step, amount):
                return False, _require_approval(case, step, amount, above, now)
    if error is not None:
        refused(case, template, error, now)
        return False, None
    return True, None


def _require_approval(
    case: CaseSnapshot, step: BillingStep, amount: Decimal, above: Decimal, now: datetime
) -> Move:
    """The amount needs an approval it does not have: the case goes (back) to the approver."""
    assert step.approval is not None
    case.pending_action = None
    detail = {"amount": str(amount), "above": str(above), "approval_step": step.approval.step}
    record(case, now, money_rules.APPROVAL_REQUIRED, step=step.id, detail=detail)
    return Move(step.approval.step, last_completed_task(case))


def refused(
    case: CaseSnapshot, template: SopTemplate, error: dict[str, Any], now: datetime
) -> Task:
    """Billing refused (a business error): a person gets a task with the error attached."""
    assert case.pending_action is not None
    step = template.step(case.pending_action.step)
    assert isinstance(step, BillingStep)
    case.pending_action = None
    record(case, now, BILLING_REFUSED, step=step.id, detail=error)
    title = f"Billing refused {step.action}: {error.get('message', '')}"
    data = {BILLING_ERROR: error}
    return open_error_task(
        case, step.id, title, step.error_queue, 80, ERROR_OUTCOMES, data, now, step.fields
    )


KIND: StepKind[BillingStep] = StepKind(
    BillingStep, enter=enter, after=after, completed=completed, done=done
)
