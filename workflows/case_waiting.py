"""What a case is waiting on, at a moment: pure, from the case snapshot (and its template).

People: open tasks with their business-time deadline and the business time left (frozen
while the clock is paused). Time: `wait` steps (a delay, or a date such as a promise to
pay) with their instant. Systems: billing calls and emails retried through an outage, with
the attempts that failed and the last error. Leads: open escalations. The case workflow
answers it as the `waiting_on` query (its calendars are pinned there); the API shows it on
`GET /cases/{id}`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from escalations.calendars import UnknownCalendarError
from sop_templates.schema import SopTemplate, WaitStep
from workflows.case_models import (
    CaseSnapshot,
    CaseStatus,
    EscalationLink,
    Outage,
    PendingAction,
    Task,
    TaskStatus,
)

RESOLVED = "resolved"


class WaitingTask(BaseModel):
    """An open task: the case waits on a person."""

    task_id: str
    step: str
    title: str
    queue: str
    status: str
    assignee: str | None
    # The deadline in business time on the case's calendar; None while paused.
    due: datetime | None
    # Business time left; frozen while paused; None without an SLA (or a calendar to count
    # on, where the case is read without its workflow).
    time_left_seconds: float | None
    sla_state: str | None
    paused: bool
    pause_reason: str | None
    paused_until: datetime | None  # the pause ends by itself then


class WaitingTimer(BaseModel):
    """A `wait` step: the case goes on by itself at `until` (wall time)."""

    step: str
    title: str
    # `after`: a delay from when the step began; `until`: a date the case holds (a promise).
    kind: str
    until: datetime
    seconds_left: float


class WaitingEscalation(BaseModel):
    """An escalation not yet resolved: the case waits on a lead."""

    escalation_id: str
    kind: str
    status: str
    queue: str
    task_id: str | None
    reason: str
    opened_at: datetime


class WaitingOn(BaseModel):
    at: datetime
    tasks: list[WaitingTask] = Field(default_factory=list)
    timers: list[WaitingTimer] = Field(default_factory=list)
    outages: list[Outage] = Field(default_factory=list)
    escalations: list[WaitingEscalation] = Field(default_factory=list)
    # The automatic step (billing call, email) the case is carrying out, if any.
    action: PendingAction | None = None
    # Why the case waits on a person after an SOP error at run time.
    stalled: str | None = None


def waiting_on(case: CaseSnapshot, now: datetime, template: SopTemplate | None = None) -> WaitingOn:
    """Everything `case` waits on at `now`; a closed case waits only on its escalations
    and on emails still going through an outage."""
    escalations = [_escalation(e) for e in case.escalations if e.status != RESOLVED]
    if case.status == CaseStatus.CLOSED:
        return WaitingOn(at=now, outages=list(case.outages), escalations=escalations)
    return WaitingOn(
        at=now,
        tasks=[_task(t, now) for t in case.tasks if t.status != TaskStatus.DONE],
        timers=_timers(case, now, template),
        outages=list(case.outages),
        escalations=escalations,
        action=case.pending_action,
        stalled=case.stalled,
    )


def _task(task: Task, now: datetime) -> WaitingTask:
    return WaitingTask(
        task_id=task.id,
        step=task.step,
        title=task.title,
        queue=task.queue,
        status=task.status.value,
        assignee=task.assignee,
        due=task.sla_due,
        time_left_seconds=time_left(task, now),
        sla_state=task.sla_state.value if task.sla_state else None,
        paused=task.sla_paused,
        pause_reason=task.pause_reason,
        paused_until=task.paused_until,
    )


def time_left(task: Task, now: datetime) -> float | None:
    """Business time left on the task's SLA at `now` (frozen while paused)."""
    if task.sla is None:
        return None
    if task.sla_paused and task.sla_left_seconds is not None:
        return task.sla_left_seconds
    try:
        return task.sla.remaining(now).total_seconds()
    except UnknownCalendarError:
        return None  # a pinned calendar this process never saw (the case read elsewhere)


def _timers(case: CaseSnapshot, now: datetime, template: SopTemplate | None) -> list[WaitingTimer]:
    if case.waiting_until is None or case.current_step is None:
        return []
    step = _wait_step(template, case.current_step)
    return [
        WaitingTimer(
            step=case.current_step,
            title=step.title if step else "",
            kind="until" if step and step.until else "after",
            until=case.waiting_until,
            seconds_left=max((case.waiting_until - now).total_seconds(), 0.0),
        )
    ]


def _wait_step(template: SopTemplate | None, step_id: str) -> WaitStep | None:
    if template is None:
        return None
    step = next((s for s in template.steps if s.id == step_id), None)
    return step if isinstance(step, WaitStep) else None


def _escalation(link: EscalationLink) -> WaitingEscalation:
    return WaitingEscalation(
        escalation_id=link.id,
        kind=link.kind,
        status=link.status,
        queue=link.queue,
        task_id=link.task_id,
        reason=link.reason,
        opened_at=link.opened_at,
    )
