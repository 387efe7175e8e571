"""`email`: one of the SOP's emails, sent beside the case (the case goes on at once).

An email that can never go as it is (it does not render, a bad address) becomes a task for
a person (`retry` under a new key, or `skip`); a case that reached its end meanwhile opens
again until that task is decided.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.case_models import (
    EMAIL_ERROR,
    CaseSnapshot,
    CaseStatus,
    CompleteTask,
    PendingAction,
    Task,
    TaskStatus,
)
from sop_templates.schema import DEFAULT_EMAIL_ERROR_QUEUE, EmailStep, EndStep, SopTemplate
from workflows.case_core import (
    ERROR_OUTCOMES,
    Move,
    entries_of,
    last_completed_task,
    open_error_task,
    record,
)
from workflows.steps.base import StepKind, pend

# The kind of a retried email: sent again beside the case, which does not move on again.
EMAIL_RETRY = "email_retry"


def enter(
    case: CaseSnapshot, template: SopTemplate, step: EmailStep, now: datetime, last: Task | None
) -> None:
    pend(case, step)


def after(step: EmailStep) -> str:
    return step.next


def recipients(value: Any) -> list[str]:
    """An email step's `to`: one address, a list, or nothing (the case has no contact)."""
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def done(
    case: CaseSnapshot,
    template: SopTemplate,
    step: EmailStep,
    result: dict[str, Any],
    now: datetime,
) -> Move:
    """The email went out (cases that waited on each email before going on)."""
    case.pending_action = None
    record(case, now, "email_done", step=step.id, detail=result)
    return Move(step.next, last_completed_task(case))


def queued(case: CaseSnapshot, template: SopTemplate, to: list[str], now: datetime) -> Move:
    """The pending email is on its way: the case moves on without waiting for SMTP."""
    assert case.pending_action is not None
    step = template.step(case.pending_action.step)
    assert isinstance(step, EmailStep)
    case.pending_action = None
    record(case, now, "email_queued", step=step.id, detail={"template": step.template, "to": to})
    return Move(step.next, last_completed_task(case))


def finished(
    case: CaseSnapshot, step_id: str, result: dict[str, Any], now: datetime, *, failed: bool = False
) -> None:
    """What became of a queued email: sent (or already sent), or failed for good."""
    record(case, now, "email_failed" if failed else "email_done", step=step_id, detail=result)


def refused(
    case: CaseSnapshot, template: SopTemplate, step_id: str, error: dict[str, Any], now: datetime
) -> Task:
    """An email that can never go as it is (it does not render, a bad address): a person gets
    a task with the error (`retry` once fixed, or `skip`); the case goes on meanwhile."""
    step = template.step(step_id)
    assert isinstance(step, EmailStep)
    record(case, now, "email_failed", step=step.id, detail=error)
    queue = step.error_queue or DEFAULT_EMAIL_ERROR_QUEUE
    title = f"Email {step.template} not sent: {error.get('error', '')}"[:300]
    data = {EMAIL_ERROR: error}
    return open_error_task(case, step.id, title, queue, 80, ERROR_OUTCOMES, data, now)


def open_tasks(case: CaseSnapshot, template: SopTemplate) -> list[Task]:
    step_ids = {s.id for s in template.steps if isinstance(s, EmailStep)}
    return [t for t in case.tasks if t.status != TaskStatus.DONE and t.step in step_ids]


def keep_open_for_tasks(case: CaseSnapshot, template: SopTemplate, now: datetime) -> bool:
    """A case that reached its end while one of its emails still waits on a person opens
    again until that person decides (a closed case's tasks cannot be worked)."""
    if case.status != CaseStatus.CLOSED or not open_tasks(case, template):
        return False
    case.status, case.closed_at = CaseStatus.OPEN, None
    record(case, now, "case_reopened", step=case.current_step, detail={"reason": "email failed"})
    return True


def completed(
    case: CaseSnapshot,
    template: SopTemplate,
    step: EmailStep,
    task: Task,
    cmd: CompleteTask,
    now: datetime,
) -> Move | None:
    """A person decided on an unsendable email: `retry` sends it again under a new key; then
    a case held open at its end closes (enters its end again) once no email task is left."""
    if cmd.outcome == "retry":
        tries = entries_of(case, "email_failed", step.id)
        key = f"{case.id}:{step.id}:retry{tries}"
        retry = PendingAction(step=step.id, kind=EMAIL_RETRY, idempotency_key=key)
        case.email_retries = [*case.email_retries, retry]
    at = template.step(case.current_step) if case.current_step else None
    held_at_end = case.status == CaseStatus.OPEN and isinstance(at, EndStep)
    if held_at_end and at and not open_tasks(case, template):
        return Move(at.id, last_completed_task(case))
    return None


def requeued(
    case: CaseSnapshot, template: SopTemplate, retry: PendingAction, to: list[str], now: datetime
) -> None:
    """The retried email is on its way again; the case stays where it is."""
    step = template.step(retry.step)
    assert isinstance(step, EmailStep)
    case.email_retries = [r for r in case.email_retries if r != retry]
    detail = {"template": step.template, "to": to, "retry": True}
    record(case, now, "email_queued", step=step.id, detail=detail)


KIND: StepKind[EmailStep] = StepKind(
    EmailStep, enter=enter, after=after, completed=completed, done=done
)
