"""How a case moves through its SOP template: pure, deterministic functions.

The workflow calls these from its Update validators (the `check_*` functions, read-only)
and handlers (the mutating ones). No I/O, no clock: the caller passes `now`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from access.policy import Action, Refusal, not_holder, refuse_role, refuse_task
from domain.case_models import (
    Actor,
    CaseInput,
    CaseSnapshot,
    CaseStatus,
    ClaimTask,
    CompleteTask,
    EscalationLink,
    HistoryEntry,
    MigrateSop,
    PendingAction,
    ReleaseTask,
    SlaState,
    Task,
    TaskStatus,
)
from escalations.calendars import get_calendar, pin
from escalations.sla_clock import InvalidBudgetError, SlaClock, parse_budget
from sop_templates.expressions import ExpressionError, compile_expression
from sop_templates.schema import (
    DEFAULT_EMAIL_ERROR_QUEUE,
    DEFAULT_ERROR_QUEUE,
    BillingStep,
    ComputeStep,
    DecisionStep,
    EmailStep,
    EndStep,
    HumanTaskStep,
    SopTemplate,
    WaitStep,
)
from sop_templates.validation import CASE_FIELDS
from workflows import dunning, money_rules
from workflows.task_fields import field_errors

# Decision steps lead to decision steps; a cycle made only of them would never stop.
MAX_AUTOMATIC_STEPS = 100


class CaseRuleError(Exception):
    """A command the case does not allow; `kind` maps to an HTTP status in the API."""

    def __init__(self, kind: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details or {}

    @classmethod
    def of(cls, refusal: Refusal) -> CaseRuleError:
        return cls(refusal.kind, refusal.message, dict(refusal.details))


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
    is_approval = any(e.kind == "approval" and e.task_id == task.id for e in case.escalations)
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
    if isinstance(step, BillingStep):  # a person decided what to do about billing's refusal
        target = step.id if cmd.outcome == "retry" else step.next
        if step.retry_store_as and cmd.outcome == "retry":
            case.data = {**case.data, step.retry_store_as: cmd.data}
        _enter(case, template, target, now, last_task=task)
        return task
    if isinstance(step, EmailStep):  # a person decided what to do about an unsendable email
        email_decided(case, template, step, cmd.outcome, now)
        return task
    assert isinstance(step, HumanTaskStep)
    if step.store_as:
        case.data = {**case.data, step.store_as: cmd.data}
    _record_approval(case, template, task, cmd.actor, now)
    _enter(case, template, step.transitions[cmd.outcome], now, last_task=task)
    return task


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
                _require_approval(case, template, step, amount, above, now)
                return False
    if error is not None:
        action_refused(case, template, error, now)
        return False
    return True


def _require_approval(
    case: CaseSnapshot,
    template: SopTemplate,
    step: BillingStep,
    amount: Decimal,
    above: Decimal,
    now: datetime,
) -> None:
    """The amount needs an approval it does not have: the case goes (back) to the approver."""
    assert step.approval is not None
    case.pending_action = None
    detail = {"amount": str(amount), "above": str(above), "approval_step": step.approval.step}
    record(case, now, money_rules.APPROVAL_REQUIRED, step=step.id, detail=detail)
    _enter(case, template, step.approval.step, now, last_task=last_completed_task(case))


# What an SOP can get wrong at run time: an expression that fails, data that is missing or
# of the wrong kind, a date that is none, a step the interpreter cannot take.
SOP_RUNTIME_ERRORS = (CaseRuleError, ExpressionError, AssertionError, KeyError, ValueError,
                      TypeError, ArithmeticError)  # fmt: skip
SOP_ERROR = "sop_error"
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
    return _open_error_task(case, step_id, title, queue, 90, SOP_ERROR_OUTCOMES, data, now)


def _open_error_task(
    case: CaseSnapshot,
    step_id: str,
    title: str,
    queue: str,
    priority: int,
    outcomes: list[str],
    data: dict[str, Any],
    now: datetime,
    fields: dict[str, str] | None = None,
) -> Task:
    """A task for a person about what an automatic step could not do, the error attached."""
    task = Task(
        id=next_task_id(case),
        case_id=case.id,
        step=step_id,
        title=title,
        queue=queue,
        priority=priority,
        allowed_outcomes=outcomes,
        vendor=case.vendor,
        created_at=now,
        data=data,
        fields=fields,
    )
    case.tasks.append(task)
    record(case, now, "task_opened", task=task, detail={"queue": queue})
    return task


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
    if isinstance(step, DecisionStep):
        return step.otherwise
    return getattr(step, "next", None)


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
    """Enter `step_id`, following decision steps until a task is opened or the case ends."""
    for _ in range(MAX_AUTOMATIC_STEPS):
        step = template.step(step_id)
        case.current_step = step.id
        record(case, now, "step_entered", step=step.id)
        if isinstance(step, HumanTaskStep):
            _open_task_for(case, step, now)
            return
        if isinstance(step, EndStep):
            case.status, case.resolution, case.closed_at = CaseStatus.CLOSED, step.resolution, now
            record(case, now, "case_closed", step=step.id, detail={"resolution": step.resolution})
            return
        if isinstance(step, WaitStep):
            case.waiting_until = _wait_end(case, template, step, now)
            record(
                case, now, "waiting", step=step.id, detail={"until": case.waiting_until.isoformat()}
            )
            return
        if isinstance(step, EmailStep | BillingStep):
            entered = entries_of(case, "step_entered", step.id)
            # The same key on every retry of this call; a new one if the case comes back here.
            key = f"{case.id}:{step.id}:{entered}"
            case.pending_action = PendingAction(step=step.id, kind=step.kind, idempotency_key=key)
            return
        if isinstance(step, ComputeStep):
            _compute(case, template, step, last_task, now)
            step_id = step.next
            continue
        step_id = _decide(case, template, step, last_task)
    raise CaseRuleError("invalid", f"more than {MAX_AUTOMATIC_STEPS} decision steps in a row")


def _compute(
    case: CaseSnapshot, template: SopTemplate, step: ComputeStep, last: Task | None, now: datetime
) -> None:
    context = condition_context(case, template, last)
    values: dict[str, Any] = {}
    for name, source in step.set.items():
        try:
            value = compile_expression(source).evaluate(context)
        except ExpressionError as exc:
            raise CaseRuleError("invalid", f"step {step.id!r}: {exc}") from exc
        # Decimals travel as strings, as amounts do everywhere else.
        values[name] = str(value) if isinstance(value, Decimal) else value
    case.data = {**case.data, step.store_as: values}
    record(case, now, "computed", step=step.id, detail=values)


def _decide(
    case: CaseSnapshot, template: SopTemplate, step: DecisionStep, last_task: Task | None
) -> str:
    context = condition_context(case, template, last_task)
    for branch in step.branches:
        try:
            if compile_expression(branch.when).evaluate(context):
                return branch.goto
        except ExpressionError as exc:
            # A condition that cannot be evaluated must not pick a branch silently.
            raise CaseRuleError("invalid", f"step {step.id!r}: {exc}") from exc
    return step.otherwise


def condition_context(
    case: CaseSnapshot, template: SopTemplate, last_task: Task | None
) -> dict[str, Any]:
    """The names a template condition may read: `case`, `task` (the last completed), `params`."""
    case_view = case.model_dump(include=set(CASE_FIELDS))
    task_view = (
        {"step": last_task.step, "outcome": last_task.outcome, "data": last_task.data}
        if last_task
        else {}
    )
    return {"case": case_view, "task": task_view, "params": dict(template.parameters)}


def _open_task_for(case: CaseSnapshot, step: HumanTaskStep, now: datetime) -> Task:
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
        add_escalation(case, task, "approval", reason, "casebook", now, 0)
    return task


def add_escalation(
    case: CaseSnapshot,
    task: Task | None,
    kind: str,
    reason: str,
    by: str,
    now: datetime,
    late_by_seconds: float,
) -> EscalationLink:
    link = EscalationLink(
        id=f"{case.id}.e{len(case.escalations) + 1}",
        kind=kind,
        reason=reason,
        task_id=task.id if task else None,
        step=task.step if task else None,
        queue=task.queue if task else "*",
        opened_at=now,
        opened_by=by,
        late_by_seconds=late_by_seconds,
    )
    case.escalations.append(link)
    return link


def refresh_sla(task: Task) -> None:
    """Copy what the clock says into the fields inboxes read."""
    if task.sla is None:
        return
    task.sla_due, task.sla_warning_at = task.sla.due_at(), task.sla.warning_at()
    task.sla_paused = task.sla.is_paused
    # While paused there is no deadline, but the time left is known and frozen.
    task.sla_left_seconds = (
        task.sla.remaining(task.sla.pauses[-1].paused_at).total_seconds()
        if task.sla_paused
        else None
    )
    task.sla_state = task.sla_state or SlaState.ON_TIME


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


def next_task_id(case: CaseSnapshot) -> str:
    """Task ids count every task the case ever had, also those of earlier runs."""
    return f"{case.id}.t{case.earlier_tasks + len(case.tasks) + 1}"


def entries_of(case: CaseSnapshot, event: str, step: str) -> int:
    """How many `event` entries of `step` the case has recorded, in all its runs."""
    here = sum(1 for h in case.history if h.event == event and h.step == step)
    return case.earlier_counts.get(f"{event}:{step}", 0) + here


def record(
    case: CaseSnapshot,
    now: datetime,
    event: str,
    *,
    task: Task | None = None,
    step: str | None = None,
    actor: str | None = None,
    outcome: str | None = None,
    note: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    case.history.append(
        HistoryEntry(
            at=now,
            event=event,
            step=step or (task.step if task else None),
            task_id=task.id if task else None,
            actor=actor,
            outcome=outcome,
            note=note,
            detail=detail or {},
        )
    )
    case.revision += 1


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


ERROR_OUTCOMES = ["retry", "skip"]


def last_completed_task(case: CaseSnapshot) -> Task | None:
    done = [t for t in case.tasks if t.status == TaskStatus.DONE and t.completed_at]
    return max(done, key=lambda t: t.completed_at or t.created_at, default=None)


def action_context(case: CaseSnapshot, template: SopTemplate) -> dict[str, Any]:
    return condition_context(case, template, last_completed_task(case))


def evaluate(case: CaseSnapshot, template: SopTemplate, source: str) -> Any:
    """A template expression's value for this case (e.g. a billing argument, an address)."""
    try:
        return compile_expression(source).evaluate(action_context(case, template))
    except ExpressionError as exc:
        raise CaseRuleError("invalid", f"step {case.current_step!r}: {exc}") from exc


def recipients(value: Any) -> list[str]:
    """An email step's `to`: one address, a list, or nothing (the case has no contact)."""
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def action_done(
    case: CaseSnapshot, template: SopTemplate, result: dict[str, Any], now: datetime
) -> None:
    """The pending email or billing call succeeded: keep what it returned and move on."""
    assert case.pending_action is not None
    step = template.step(case.pending_action.step)
    assert isinstance(step, EmailStep | BillingStep)
    case.pending_action = None
    if isinstance(step, BillingStep) and step.store_as:
        before = case.data.get(step.store_as)
        case.data = {**case.data, step.store_as: result}
    record(case, now, f"{step.kind}_done", step=step.id, detail=result)
    if isinstance(step, BillingStep) and step.store_as and step.action == "get_exposure":
        # Why the next notice names other invoices than the last: a dispute opened or closed.
        for event, detail in dunning.changes(before, result):
            record(case, now, event, step=step.id, detail=detail)
    _enter(case, template, step.next, now, last_task=last_completed_task(case))


def email_queued(case: CaseSnapshot, template: SopTemplate, to: list[str], now: datetime) -> None:
    """The pending email is on its way: the case moves on without waiting for SMTP."""
    assert case.pending_action is not None
    step = template.step(case.pending_action.step)
    assert isinstance(step, EmailStep)
    case.pending_action = None
    record(case, now, "email_queued", step=step.id, detail={"template": step.template, "to": to})
    _enter(case, template, step.next, now, last_task=last_completed_task(case))


def email_finished(
    case: CaseSnapshot, step_id: str, result: dict[str, Any], now: datetime, *, failed: bool = False
) -> None:
    """What became of a queued email: sent (or already sent), or failed for good."""
    record(case, now, "email_failed" if failed else "email_done", step=step_id, detail=result)


# The kind of a retried email: sent again beside the case, which does not move on again.
EMAIL_RETRY = "email_retry"


def email_refused(
    case: CaseSnapshot, template: SopTemplate, step_id: str, error: dict[str, Any], now: datetime
) -> Task:
    """An email that can never go as it is (it does not render, a bad address): a person gets
    a task with the error (`retry` once fixed, or `skip`); the case goes on meanwhile."""
    step = template.step(step_id)
    assert isinstance(step, EmailStep)
    record(case, now, "email_failed", step=step.id, detail=error)
    queue = step.error_queue or DEFAULT_EMAIL_ERROR_QUEUE
    title = f"Email {step.template} not sent: {error.get('error', '')}"[:300]
    data = {"email_error": error}
    return _open_error_task(case, step.id, title, queue, 80, ERROR_OUTCOMES, data, now)


def open_email_tasks(case: CaseSnapshot, template: SopTemplate) -> list[Task]:
    step_ids = {s.id for s in template.steps if isinstance(s, EmailStep)}
    return [t for t in case.tasks if t.status != TaskStatus.DONE and t.step in step_ids]


def keep_open_for_email_tasks(case: CaseSnapshot, template: SopTemplate, now: datetime) -> bool:
    """A case that reached its end while one of its emails still waits on a person opens
    again until that person decides (a closed case's tasks cannot be worked)."""
    if case.status != CaseStatus.CLOSED or not open_email_tasks(case, template):
        return False
    case.status, case.closed_at = CaseStatus.OPEN, None
    record(case, now, "case_reopened", step=case.current_step, detail={"reason": "email failed"})
    return True


def email_decided(
    case: CaseSnapshot, template: SopTemplate, step: EmailStep, outcome: str, now: datetime
) -> None:
    """`retry` sends the email again under a new key; then a case held open at its end
    closes once no email task is left."""
    if outcome == "retry":
        tries = entries_of(case, "email_failed", step.id)
        key = f"{case.id}:{step.id}:retry{tries}"
        retry = PendingAction(step=step.id, kind=EMAIL_RETRY, idempotency_key=key)
        case.email_retries = [*case.email_retries, retry]
    at = template.step(case.current_step) if case.current_step else None
    held_at_end = case.status == CaseStatus.OPEN and isinstance(at, EndStep)
    if held_at_end and at and not open_email_tasks(case, template):
        _enter(case, template, at.id, now, last_task=last_completed_task(case))


def email_requeued(
    case: CaseSnapshot, template: SopTemplate, retry: PendingAction, to: list[str], now: datetime
) -> None:
    """The retried email is on its way again; the case stays where it is."""
    step = template.step(retry.step)
    assert isinstance(step, EmailStep)
    case.email_retries = [r for r in case.email_retries if r != retry]
    detail = {"template": step.template, "to": to, "retry": True}
    record(case, now, "email_queued", step=step.id, detail=detail)


def action_refused(
    case: CaseSnapshot, template: SopTemplate, error: dict[str, Any], now: datetime
) -> Task:
    """Billing refused (a business error): a person gets a task with the error attached."""
    assert case.pending_action is not None
    step = template.step(case.pending_action.step)
    assert isinstance(step, BillingStep)
    case.pending_action = None
    record(case, now, "billing_refused", step=step.id, detail=error)
    title = f"Billing refused {step.action}: {error.get('message', '')}"
    data = {"billing_error": error}
    return _open_error_task(
        case, step.id, title, step.error_queue, 80, ERROR_OUTCOMES, data, now, step.fields
    )


def _wait_end(case: CaseSnapshot, template: SopTemplate, step: WaitStep, now: datetime) -> datetime:
    grace = _duration(case, template, step, step.grace) if step.grace else timedelta(0)
    if step.after:
        return now + _duration(case, template, step, step.after) + grace
    assert step.until is not None
    value = evaluate(case, template, step.until)
    try:
        instant = _instant_of(str(value), case.region)
    except ValueError:
        raise CaseRuleError("invalid", f"step {step.id!r}: until={value!r} is not a date") from None
    return instant + grace


def _duration(case: CaseSnapshot, template: SopTemplate, step: WaitStep, text: str) -> timedelta:
    """A wait's `after`/`grace`: a literal (7d), or an expression such as
    params.reminder_wait whose value is one (the SOP owner tunes the ladder in one place)."""
    try:
        return _wall(text)
    except InvalidBudgetError:
        pass
    value = evaluate(case, template, text)
    try:
        return _wall(str(value))
    except InvalidBudgetError as exc:
        raise CaseRuleError("invalid", f"step {step.id!r}: {text} = {value!r}: {exc}") from None


def _wall(budget: str) -> timedelta:
    """A duration in wall time: a day is 24 hours (the `24x7` calendar)."""
    return parse_budget(budget).as_timedelta(get_calendar("24x7"))


def _instant_of(text: str, region: str) -> datetime:
    """An ISO instant, or a date: the start of that day in the region's time zone."""
    if "T" in text:
        instant = datetime.fromisoformat(text)
        if instant.tzinfo is None:
            raise ValueError(text)
        return instant
    day = date.fromisoformat(text)
    return datetime.combine(day, time(0), get_calendar(region).zone).astimezone(UTC)


def wait_over(case: CaseSnapshot, template: SopTemplate, now: datetime) -> None:
    """The wait step's timer fired: go on to its next step."""
    step = template.step(case.current_step or "")
    assert isinstance(step, WaitStep)
    case.waiting_until = None
    record(case, now, "wait_over", step=step.id)
    _enter(case, template, step.next, now, last_task=last_completed_task(case))
