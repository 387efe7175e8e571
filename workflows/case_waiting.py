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

from domain.case_models import (
    CaseSnapshot,
    CaseStatus,
    EscalationLink,
    Task,
    TaskStatus,
    WaitingEscalation,
    WaitingOn,
    WaitingTask,
    WaitingTimer,
)
from escalations.calendars import UnknownCalendarError
from sop_templates.schema import SopTemplate, WaitStep

RESOLVED = "resolved"


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
