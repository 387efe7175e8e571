"""How a case moves through its SOP template: pure, deterministic functions.

The workflow calls these from its Update validators (the `check_*` functions, read-only)
and handlers (the mutating ones). No I/O, no clock: the caller passes `now`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from access.policy import Action, not_holder, refuse_role, refuse_task
from domain.case_models import (
    SOP_ERROR,
    Actor,
    CaseInput,
    CaseSnapshot,
    CaseStatus,
    ClaimTask,
    CompleteTask,
    MigrateSop,
    ReleaseTask,
    Task,
    TaskStatus,
)
from domain.escalation_models import EscalationKind
from escalations.calendars import pin
from sop_templates.expressions import ExpressionError
from sop_templates.schema import DEFAULT_ERROR_QUEUE, BillingStep, HumanTaskStep, SopTemplate
from workflows import steps
from workflows.case_core import CaseRuleError, Move, open_error_task, record

# Re-exported (`x as x`): the case's loop (case_workflow.py) reads these here, beside the rules.
from workflows.case_core import action_context as action_context
from workflows.case_core import evaluate as evaluate
from workflows.steps import billing, email, wait
from workflows.steps.email import recipients as recipients
from workflows.task_fields import field_errors

# Decision steps lead to decision steps; a cycle made only of them would never stop.
MAX_AUTOMATIC_STEPS = 100


def open_case(inp: CaseInput, now: datetime, *, errors_become_work: bool = False) -> CaseSnapshot:
    """A new case, already moved into its SOP's start step."""
    case = CaseSnapshot(
        id=inp.case_id,
        type=inp.case_type,
        customer_id=inp.customer_id,
        invoice_ids=inp.invoice_ids,
        amount=inp.amount,
        currency=inp.currency,
        region=inp.region,
        reason_code=inp.reason_code,
        vendor=inp.vendor,
        data=inp.data,
        sop=inp.sop,
        opened_by=inp.opened_by.name,
        opened_at=now,
        calendars={facts.name: pin(facts) for facts in inp.calendars},
        errors_become_work=errors_become_work,
        escalation_matrix_version=inp.escalation_matrix_version,
        hypercare=inp.hypercare,
    )
    record(
        case,
        now,
        "case_opened",
        actor=inp.opened_by.name,
        detail={"sop": inp.sop.name, "sop_version": inp.sop.version},
    )
    if inp.hypercare is not None:
        record(case, now, "hypercare", detail=inp.hypercare.history_detail())
    _enter(case, inp.template, inp.template.start, now, last_task=None)
    return case


def check_claim(case: CaseSnapshot, cmd: ClaimTask) -> Task:
    """The validator's check: the policy (role, vendor, queue), then the task is free."""
    authorize_task(case, cmd.task_id, cmd.actor, Action.CLAIM)
    return _claimable(case, cmd)


def _claimable(case: CaseSnapshot, cmd: ClaimTask) -> Task:
    task = live_task(case, cmd.task_id)
    if task.status == TaskStatus.CLAIMED:
        raise CaseRuleError(
            "conflict",
            f"task {task.id} is already claimed by {task.assignee}",
            {"assignee": task.assignee},
        )
    return task


def claim(case: CaseSnapshot, cmd: ClaimTask, now: datetime) -> Task:
    # The state only: the policy decided in the validator, and a claim recorded under an
    # older, laxer policy must replay as it happened.
    task = _claimable(case, cmd)
    task.status, task.assignee, task.claimed_at = TaskStatus.CLAIMED, cmd.actor.name, now
    record(case, now, "task_claimed", task=task, actor=cmd.actor.name)
    return task


def check_release(case: CaseSnapshot, cmd: ReleaseTask) -> Task:
    task = live_task(case, cmd.task_id)
    check_assignee(task, cmd.actor)
    return task


def release(case: CaseSnapshot, cmd: ReleaseTask, now: datetime) -> Task:
    task = check_release(case, cmd)
    task.status, task.assignee, task.claimed_at = TaskStatus.OPEN, None, None
    record(case, now, "task_released", task=task, actor=cmd.actor.name)
    return task


def check_complete(
    case: CaseSnapshot, cmd: CompleteTask, template: SopTemplate | None = None
) -> Task:
    task = live_task(case, cmd.task_id)
    check_assignee(task, cmd.actor)
    if cmd.outcome not in task.allowed_outcomes:
        raise CaseRuleError(
            "invalid",
            f"outcome {cmd.outcome!r} is not allowed for step {task.step!r}; "
            f"allowed: {', '.join(task.allowed_outcomes)}",
            {"field": "outcome", "allowed_outcomes": task.allowed_outcomes},
        )
    if SOP_ERROR in task.data:
        if template is not None:
            _check_sop_error_decision(template, task, cmd)
        return task
    _check_approver(case, task, cmd)
    _check_fields(case, task, cmd.data)
    return task


def _check_approver(case: CaseSnapshot, task: Task, cmd: CompleteTask) -> None:
    """An approval task (`approval: true`) is approved by a lead or admin only, whoever else
    serves its queue; the billing call checks the approver's role again."""
    approval = EscalationKind.APPROVAL
    is_approval = any(e.kind == approval and e.task_id == task.id for e in case.escalations)
    if is_approval and cmd.outcome == "approve":
        refusal = refuse_role(cmd.actor, Action.APPROVE)
        if refusal:
            raise CaseRuleError(refusal.kind, f"task {task.id}: {refusal.message}")


def _check_fields(case: CaseSnapshot, task: Task, data: dict[str, Any]) -> None:
    if task.fields is None:
        return
    errors = field_errors(task.fields, data, case.invoice_ids)
    if errors:
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise CaseRuleError("invalid", message, {"fields": errors})


def complete(case: CaseSnapshot, template: SopTemplate, cmd: CompleteTask, now: datetime) -> Task:
    """Finish the task with its outcome and move the case along the SOP."""
    task = check_complete(case, cmd, template)
    sop_error = SOP_ERROR in task.data
    task.status, task.completed_at = TaskStatus.DONE, now
    task.outcome, task.note = cmd.outcome, cmd.note
    # An SOP error's task keeps its error beside what the person decided.
    task.data = {SOP_ERROR: task.data[SOP_ERROR], **cmd.data} if sop_error else cmd.data
    record(
        case,
        now,
        "task_completed",
        task=task,
        actor=cmd.actor.name,
        outcome=cmd.outcome,
        note=cmd.note,
    )
    if sop_error:
        _resolve_sop_error(case, template, task, cmd, now)
        return task
    step = template.step(task.step)
    _go(case, template, steps.kind_of(step).completed(case, template, step, task, cmd, now), now)
    return task


def check_billing_call(
    case: CaseSnapshot,
    template: SopTemplate,
    step: BillingStep,
    args: dict[str, Any],
    now: datetime,
) -> bool:
    """Whether the pending billing call may go out with these `args` (the values it would
    send). If not, the case has moved: to a person with the error (another customer's
    account, an invoice not on the case, no valid amount), or into the approval step."""
    may_go, move = billing.check_call(case, template, step, args, now)
    _go(case, template, move, now)
    return may_go


# What an SOP can get wrong at run time: an expression that fails, data that is missing or
# of the wrong kind, a date that is none, a step the interpreter cannot take.
SOP_RUNTIME_ERRORS = (CaseRuleError, ExpressionError, AssertionError, KeyError, ValueError,
                      TypeError, ArithmeticError)  # fmt: skip
SOP_ERROR_OUTCOMES = ["retry", "skip", "goto"]


def _enter(
    case: CaseSnapshot, template: SopTemplate, step_id: str, now: datetime, last_task: Task | None
) -> None:
    """Enter `step_id`; an SOP error on the way becomes a task for a person (see `stall`)."""
    try:
        _enter_steps(case, template, step_id, now, last_task)
    except SOP_RUNTIME_ERRORS as exc:
        if not case.errors_become_work:
            raise
        stall(case, template, case.current_step or step_id, error_text(exc), now)


def _go(case: CaseSnapshot, template: SopTemplate, move: Move | None, now: datetime) -> None:
    """Enter the step a step kind sent the case to, if any."""
    if move is not None:
        _enter(case, template, move.step, now, last_task=move.last_task)


def error_text(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, CaseRuleError) else str(exc)
    return f"{type(exc).__name__}: {message}" if not isinstance(exc, CaseRuleError) else message


def stall(
    case: CaseSnapshot, template: SopTemplate, step_id: str, error: str, now: datetime
) -> Task:
    """The SOP failed at `step_id`: the case waits on a person, who can `retry` the step,
    `skip` to its next one, or `goto` another (`data.goto`); never a silently stuck case."""
    step = template.step(step_id) if step_id in {s.id for s in template.steps} else None
    queue = getattr(step, "error_queue", None) or DEFAULT_ERROR_QUEUE
    case.pending_action, case.waiting_until = None, None
    case.stalled = f"step {step_id!r}: {error}"
    record(case, now, SOP_ERROR, step=step_id, detail={"error": error})
    title = f"SOP error at {step_id}: {error}"[:300]
    data = {SOP_ERROR: {"step": step_id, "error": error}}
    return open_error_task(case, step_id, title, queue, 90, SOP_ERROR_OUTCOMES, data, now)


def _check_sop_error_decision(template: SopTemplate, task: Task, cmd: CompleteTask) -> None:
    if cmd.outcome == "goto":
        target = cmd.data.get("goto")
        if target not in {s.id for s in template.steps}:
            raise CaseRuleError(
                "invalid",
                f"data.goto: {target!r} is not a step of SOP {template.name} v{template.version}",
                {"field": "data.goto", "steps": [s.id for s in template.steps]},
            )
    if cmd.outcome == "skip" and _step_after(template, task.step) is None:
        raise CaseRuleError(
            "invalid",
            f"step {task.step!r} has no next step to skip to; use goto",
            {"field": "outcome"},
        )


def _step_after(template: SopTemplate, step_id: str) -> str | None:
    step = template.step(step_id)
    return steps.kind_of(step).after(step)


def _resolve_sop_error(
    case: CaseSnapshot, template: SopTemplate, task: Task, cmd: CompleteTask, now: datetime
) -> None:
    case.stalled = None
    if cmd.outcome == "retry":
        target: str | None = task.step
    elif cmd.outcome == "goto":
        target = str(cmd.data["goto"])
    else:
        target = _step_after(template, task.step)
    assert target is not None  # checked by _check_sop_error_decision
    # The work the SOP reads (`task.*`) is the last person's real task, not this one.
    last = [t for t in case.tasks if t.status == TaskStatus.DONE and SOP_ERROR not in t.data]
    _enter(case, template, target, now, last_task=last[-1] if last else None)


def _enter_steps(
    case: CaseSnapshot, template: SopTemplate, step_id: str, now: datetime, last_task: Task | None
) -> None:
    """Enter `step_id` (what that does is its kind's, `workflows/steps/`), following the
    automatic steps (decision, compute) until the case waits on something or ends."""
    for _ in range(MAX_AUTOMATIC_STEPS):
        step = template.step(step_id)
        case.current_step = step.id
        record(case, now, "step_entered", step=step.id)
        onward = steps.kind_of(step).enter(case, template, step, now, last_task)
        if onward is None:
            return
        step_id = onward
    raise CaseRuleError("invalid", f"more than {MAX_AUTOMATIC_STEPS} decision steps in a row")


def live_task(case: CaseSnapshot, task_id: str) -> Task:
    task = case.task(task_id)
    if task is None and _done_in_earlier_run(case, task_id):
        raise CaseRuleError("conflict", f"task {task_id} is already done (an earlier run)")
    if task is None:
        raise CaseRuleError("not_found", f"task {task_id} not found on case {case.id}")
    if case.status == CaseStatus.CLOSED:
        raise CaseRuleError("conflict", f"case {case.id} is closed")
    if task.status == TaskStatus.DONE:
        raise CaseRuleError("conflict", f"task {task_id} is already done")
    return task


def _done_in_earlier_run(case: CaseSnapshot, task_id: str) -> bool:
    """A task a continue-as-new left behind: only done tasks are dropped from the carried
    case, and task ids count every task the case ever had (`next_task_id`)."""
    number = task_id.removeprefix(f"{case.id}.t")
    return number != task_id and number.isdecimal() and 0 < int(number) <= case.earlier_tasks


def authorize_task(case: CaseSnapshot, task_id: str, actor: Actor, action: Action) -> None:
    """The policy's word on a task command. Validators only: handlers re-run on replay with
    the recorded actor, and a stricter policy must not refuse what was accepted then."""
    task = case.task(task_id)
    if task is None:
        return  # live_task answers "not found"
    refusal = refuse_task(actor, action, task)
    if refusal:
        raise CaseRuleError.of(refusal)


def check_assignee(task: Task, actor: Actor) -> None:
    if task.assignee != actor.name:
        raise CaseRuleError.of(not_holder(task))


def migration_blocker(
    case: CaseSnapshot, template: SopTemplate, current: SopTemplate | None = None
) -> str | None:
    """Why `case` cannot move onto `template` now, or None when it can (`current`: the
    version it runs, to compare the kind of the step it is in)."""
    if case.status == CaseStatus.CLOSED:
        return "the case is closed"
    if case.sop.name != template.name:
        return f"the case runs SOP {case.sop.name}, not {template.name}"
    if template.version <= case.sop.version:
        return f"the case already runs v{case.sop.version}"
    step_ids = {s.id for s in template.steps}
    if case.current_step not in step_ids:
        return f"its current step {case.current_step!r} does not exist in v{template.version}"
    if current is not None and case.current_step in {s.id for s in current.steps}:
        was, will = current.step(case.current_step).kind, template.step(case.current_step).kind
        if was != will:
            return (
                f"its current step {case.current_step!r} is a {was} step in "
                f"v{current.version} but a {will} step in v{template.version}"
            )
    for task in case.tasks:
        if task.status == TaskStatus.DONE:
            continue
        step = template.step(task.step) if task.step in step_ids else None
        if not isinstance(step, HumanTaskStep):
            return (
                f"open task {task.id} would be orphaned: "
                f"v{template.version} has no task step {task.step!r}"
            )
    return None


def check_migrate(case: CaseSnapshot, cmd: MigrateSop, current: SopTemplate | None = None) -> None:
    refusal = refuse_role(cmd.actor, Action.MIGRATE)
    if refusal:
        raise CaseRuleError.of(refusal)
    reason = migration_blocker(case, cmd.template, current)
    if reason:
        raise CaseRuleError("conflict", f"case {case.id} cannot move: {reason}")


def migrate(case: CaseSnapshot, cmd: MigrateSop, now: datetime) -> SopTemplate:
    """Put the case on the new version; live tasks take the new step's outcomes and queue."""
    check_migrate(case, cmd)
    before = case.sop
    case.sop = cmd.sop
    for task in case.tasks:
        if task.status != TaskStatus.DONE:
            step = cmd.template.step(task.step)
            assert isinstance(step, HumanTaskStep)
            task.allowed_outcomes, task.queue, task.title = (
                list(step.outcomes),
                step.queue,
                step.title,
            )
            task.fields = step.fields
    record(
        case,
        now,
        "sop_migrated",
        actor=cmd.actor.name,
        step=case.current_step,
        detail={
            "from_version": before.version,
            "to_version": cmd.sop.version,
            "to_hash": cmd.sop.content_hash,
        },
    )
    return cmd.template


# What the case's loop reports about its automatic steps (the step kinds decide; entering the
# step they send the case to is this module's).


def action_done(
    case: CaseSnapshot, template: SopTemplate, result: dict[str, Any], now: datetime
) -> None:
    """The pending email or billing call succeeded: keep what it returned and move on."""
    assert case.pending_action is not None
    step = template.step(case.pending_action.step)
    _go(case, template, steps.kind_of(step).done(case, template, step, result, now), now)


def email_queued(case: CaseSnapshot, template: SopTemplate, to: list[str], now: datetime) -> None:
    """The pending email is on its way: the case moves on without waiting for SMTP."""
    _go(case, template, email.queued(case, template, to, now), now)


def wait_over(case: CaseSnapshot, template: SopTemplate, now: datetime) -> None:
    """The wait step's timer fired: go on to its next step."""
    _go(case, template, wait.over(case, template, now), now)


# These only record or open a task; the case stays where it is.
email_finished = email.finished
email_refused = email.refused
email_requeued = email.requeued
open_email_tasks = email.open_tasks
keep_open_for_email_tasks = email.keep_open_for_tasks
action_refused = billing.refused
