"""`human_task`: a task in a queue; the person's outcome picks the next step."""

from __future__ import annotations

from datetime import datetime

from domain.case_models import Actor, CaseSnapshot, CompleteTask, Task
from domain.escalation_models import EscalationKind
from escalations.sla_clock import SlaClock
from sop_templates.expressions import ExpressionError, compile_expression
from sop_templates.schema import HumanTaskStep, SopTemplate
from workflows import money_rules
from workflows.case_core import (
    Move,
    add_escalation,
    condition_context,
    next_task_id,
    record,
    refresh_sla,
)
from workflows.steps.base import StepKind


def enter(
    case: CaseSnapshot, template: SopTemplate, step: HumanTaskStep, now: datetime, last: Task | None
) -> None:
    open_task_for(case, step, now)


def open_task_for(case: CaseSnapshot, step: HumanTaskStep, now: datetime) -> Task:
    task = Task(
        id=next_task_id(case),
        case_id=case.id,
        step=step.id,
        title=step.title,
        queue=step.queue,
        priority=step.priority,
        allowed_outcomes=list(step.outcomes),
        vendor=case.vendor,
        created_at=now,
        fields=step.fields,
    )
    if step.sla:
        calendar = step.sla.calendar or case.region
        pinned = case.calendars.get(calendar)
        warning = step.sla.warning
        if case.hypercare is not None:  # its version's steps warn earlier for a while
            warning = case.hypercare.warning_ratio(warning, now)
        task.sla = SlaClock.start(calendar, step.sla.budget, now, warning, pinned)
        refresh_sla(task)
    case.tasks.append(task)
    record(case, now, "task_opened", task=task, detail={"queue": step.queue})
    if step.approval:
        reason = f"approval: {step.title or step.id}"
        add_escalation(case, task, EscalationKind.APPROVAL.value, reason, "casebook", now, 0)
    return task


def completed(
    case: CaseSnapshot,
    template: SopTemplate,
    step: HumanTaskStep,
    task: Task,
    cmd: CompleteTask,
    now: datetime,
) -> Move:
    if step.store_as:
        case.data = {**case.data, step.store_as: cmd.data}
    _record_approval(case, template, task, cmd.actor, now)
    return Move(step.transitions[cmd.outcome], task)


def _record_approval(
    case: CaseSnapshot, template: SopTemplate, task: Task, actor: Actor, now: datetime
) -> None:
    """An `approve` of a money rule's approval step: keep who approved which amount (what the
    billing step would send now), so the billing call can be held to exactly that."""
    if task.outcome != "approve":
        return
    for billing in money_rules.approval_steps_of(template, task.step):
        assert billing.approval is not None
        source = billing.args.get(billing.approval.amount, "")
        try:
            value = compile_expression(source).evaluate(condition_context(case, template, task))
            amount: str | None = str(money_rules.money(value))
        except (ExpressionError, ValueError):
            amount = None  # nothing approvable: the billing step will ask again
        detail = {"billing_step": billing.id, "amount": amount, "role": actor.role.value}
        record(case, now, money_rules.APPROVAL_GRANTED, task=task, actor=actor.name, detail=detail)


KIND: StepKind[HumanTaskStep] = StepKind(HumanTaskStep, enter=enter, completed=completed)
