"""SLAs and escalations on a case: pure functions the case workflow calls.

Deadlines come from each task's `SlaClock` (business time, `escalations/`); the workflow
sleeps until `next_deadline` and then calls `fire_deadlines`. Pauses, reassignments and
escalations are Update commands with `check_*` twins for the validators.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from access.policy import Action, refuse_case, refuse_task
from domain.case_models import (
    ApplyCalendars,
    CaseSnapshot,
    CaseStatus,
    EscalateCase,
    EscalationEvent,
    EscalationLink,
    EscalationNote,
    PauseTask,
    ReassignTask,
    ResumeTask,
    Role,
    SlaState,
    Task,
    TaskStatus,
)
from escalations.calendars import pin
from escalations.sla_clock import SlaClock
from workflows.case_core import CaseRuleError, add_escalation, record, refresh_sla
from workflows.case_logic import authorize_task, check_assignee, live_task

# How much more urgent a task becomes at its SLA warning.
WARNING_PRIORITY_BOOST = 20
MAX_PRIORITY = 100


def _live_tasks(case: CaseSnapshot) -> list[Task]:
    return [t for t in case.tasks if t.status != TaskStatus.DONE]


def next_deadline(case: CaseSnapshot) -> datetime | None:
    """The next instant an SLA event is due (warning, breach or a pause's end)."""
    if case.status == CaseStatus.CLOSED:
        return None
    instants = [case.waiting_until] if case.waiting_until else []
    for task in _live_tasks(case):
        if task.sla is None:
            continue
        if task.sla_paused:
            if task.paused_until:
                instants.append(task.paused_until)
        elif task.sla_state == SlaState.ON_TIME and task.sla_warning_at:
            instants.append(task.sla_warning_at)
        elif task.sla_state == SlaState.WARNING and task.sla_due:
            instants.append(task.sla_due)
    return min(instants, default=None)


def fire_deadlines(case: CaseSnapshot, now: datetime) -> None:
    """Resume pauses that ran out, flag warnings, and escalate breaches due at `now`."""
    for task in _live_tasks(case):
        if task.sla is None:
            continue
        if task.sla_paused and task.paused_until and now >= task.paused_until:
            _resume(case, task, now, actor=None, why="pause ended")
        if task.sla_paused:
            continue
        if (
            task.sla_state == SlaState.ON_TIME
            and task.sla_warning_at
            and now >= task.sla_warning_at
        ):
            task.sla_state = SlaState.WARNING
            task.priority = min(MAX_PRIORITY, task.priority + WARNING_PRIORITY_BOOST)
            record(
                case,
                now,
                "sla_warning",
                task=task,
                detail={"due": task.sla_due.isoformat() if task.sla_due else None},
            )
        if task.sla_state == SlaState.WARNING and task.sla_due and now >= task.sla_due:
            task.sla_state = SlaState.BREACHED
            late = (now - task.sla_due).total_seconds()
            record(case, now, "sla_breached", task=task, detail={"late_by_seconds": late})
            add_escalation(
                case, task, "sla_breach", f"SLA of step {task.step} breached", "casebook", now, late
            )


def check_pause(case: CaseSnapshot, cmd: PauseTask, now: datetime) -> Task:
    task = live_task(case, cmd.task_id)
    check_assignee(task, cmd.actor)
    if task.sla is None:
        raise CaseRuleError("conflict", f"task {task.id} has no SLA to pause")
    if task.sla_paused:
        raise CaseRuleError("conflict", f"task {task.id} is already paused")
    if cmd.until is not None and cmd.until <= now:
        raise CaseRuleError("invalid", "until: must be in the future", {"field": "until"})
    return task


def pause(case: CaseSnapshot, cmd: PauseTask, now: datetime) -> Task:
    task = check_pause(case, cmd, now)
    assert task.sla is not None
    task.sla = task.sla.pause(now, cmd.reason)
    task.pause_reason, task.paused_until = cmd.reason, cmd.until
    refresh_sla(task)
    record(
        case,
        now,
        "sla_paused",
        task=task,
        actor=cmd.actor.name,
        note=cmd.reason,
        detail={
            "reason": cmd.reason,
            "until": cmd.until.isoformat() if cmd.until else None,
            "time_left_seconds": task.sla_left_seconds,
        },
    )
    return task


def check_resume(case: CaseSnapshot, cmd: ResumeTask) -> Task:
    task = live_task(case, cmd.task_id)
    check_assignee(task, cmd.actor)
    if not task.sla_paused:
        raise CaseRuleError("conflict", f"task {task.id} is not paused")
    return task


def resume(case: CaseSnapshot, cmd: ResumeTask, now: datetime) -> Task:
    task = check_resume(case, cmd)
    _resume(case, task, now, actor=cmd.actor.name, why=None)
    return task


def _resume(
    case: CaseSnapshot, task: Task, now: datetime, actor: str | None, why: str | None
) -> None:
    assert task.sla is not None
    task.sla = task.sla.resume(now)
    task.pause_reason = task.paused_until = None
    refresh_sla(task)
    record(
        case,
        now,
        "sla_resumed",
        task=task,
        actor=actor,
        note=why,
        detail={"due": task.sla_due.isoformat() if task.sla_due else None},
    )


def check_reassign(case: CaseSnapshot, cmd: ReassignTask) -> Task:
    """The validator's check: the lead may reassign this task, and the person it goes to
    may work it (role, queue, vendor), as the policy says."""
    authorize_task(case, cmd.task_id, cmd.actor, Action.REASSIGN)
    task = _reassignable(case, cmd)
    if cmd.to_user:
        _check_target(task, cmd)
    return task


def _check_target(task: Task, cmd: ReassignTask) -> None:
    target = cmd.to_actor
    if target is None or target.name != cmd.to_user:
        raise CaseRuleError(
            "invalid", f"to_user: unknown user {cmd.to_user!r}", {"field": "to_user"}
        )
    # The target will hold the task: judge it as a claim of the task, open in its queue.
    refusal = refuse_task(target, Action.CLAIM, task)
    if refusal:
        # "not found" is right for the target's own requests; the lead may know the vendor.
        why = (
            f"the task belongs to vendor {task.vendor or '(none)'}"
            if refusal.kind == "not_found"
            else refusal.message
        )
        raise CaseRuleError("forbidden", f"{target.name} may not work task {task.id}: {why}")


def _reassignable(case: CaseSnapshot, cmd: ReassignTask) -> Task:
    task = live_task(case, cmd.task_id)
    if bool(cmd.to_user) == bool(cmd.to_queue):
        raise CaseRuleError(
            "invalid", "give exactly one of to_user or to_queue", {"field": "to_user"}
        )
    return task


def reassign(case: CaseSnapshot, cmd: ReassignTask, now: datetime) -> Task:
    """Hand the task to a person or a queue; its SLA starts afresh from now."""
    # The state only: the policy decided in the validator (replays keep what was accepted).
    task = _reassignable(case, cmd)
    if cmd.to_user:
        task.status, task.assignee, task.claimed_at = TaskStatus.CLAIMED, cmd.to_user, now
    else:
        assert cmd.to_queue is not None
        task.status, task.assignee, task.claimed_at = TaskStatus.OPEN, None, None
        task.queue = cmd.to_queue
    if task.sla is not None:
        old = task.sla
        task.sla = SlaClock.start(
            old.calendar, old.budget, now, old.warning_ratio, old.calendar_digest
        )
        task.sla_state, task.pause_reason, task.paused_until = SlaState.ON_TIME, None, None
        refresh_sla(task)
    record(
        case,
        now,
        "task_reassigned",
        task=task,
        actor=cmd.actor.name,
        note=cmd.note,
        detail={
            "to_user": cmd.to_user,
            "to_queue": cmd.to_queue,
            "sla_due": task.sla_due.isoformat() if task.sla_due else None,
        },
    )
    return task


def check_escalate(case: CaseSnapshot, cmd: EscalateCase) -> Task | None:
    """The validator's check: the policy on the task to escalate (its vendor and queue), or
    on the case when it has no live task; then the state."""
    target = case.task(cmd.task_id) if cmd.task_id else next(iter(_live_tasks(case)), None)
    refusal = (
        refuse_task(cmd.actor, Action.ESCALATE, target)
        if target
        else refuse_case(cmd.actor, Action.ESCALATE, case)
    )
    if refusal:
        raise CaseRuleError.of(refusal)
    return _escalatable(case, cmd)


def _escalatable(case: CaseSnapshot, cmd: EscalateCase) -> Task | None:
    if case.status == CaseStatus.CLOSED:
        raise CaseRuleError("conflict", f"case {case.id} is closed")
    if not cmd.reason.strip():
        raise CaseRuleError("invalid", "reason: give a reason", {"field": "reason"})
    if cmd.task_id:
        return live_task(case, cmd.task_id)
    return next(iter(_live_tasks(case)), None)


def escalate(
    case: CaseSnapshot, cmd: EscalateCase, now: datetime, *, join: bool = False
) -> EscalationLink:
    """Open an escalation; with `join`, work already escalated and not yet resolved gets a
    note on its open escalation instead of a second one (patch `escalations-join`)."""
    task = _escalatable(case, cmd)  # the policy decided in the validator
    open_link = open_escalation_of(case, task) if join else None
    if open_link is not None:
        record(
            case,
            now,
            "escalation_joined",
            task=task,
            actor=cmd.actor.name,
            note=cmd.reason,
            detail={"escalation_id": open_link.id},
        )
        note = EscalationNote(
            escalation_id=open_link.id, by=cmd.actor.name, note=cmd.reason, at=now
        )
        case.escalation_notes.append(note)
        return open_link
    record(case, now, "escalation_requested", task=task, actor=cmd.actor.name, note=cmd.reason)
    return add_escalation(case, task, "manual", cmd.reason, cmd.actor.name, now, 0)


# The escalations a manual one may join: approvals are decisions, not late work.
JOINABLE_KINDS = ("manual", "sla_breach")


def open_escalation_of(case: CaseSnapshot, task: Task | None) -> EscalationLink | None:
    """The newest unresolved escalation of this task (of the case itself when None)."""
    task_id = task.id if task else None
    candidates = [
        e
        for e in case.escalations
        if e.task_id == task_id and e.kind in JOINABLE_KINDS and e.status != "resolved"
    ]
    return candidates[-1] if candidates else None


def joins_open_escalation(case: CaseSnapshot, cmd: EscalateCase) -> bool:
    """Whether `escalate` would join an open escalation (False when it would be refused)."""
    try:
        task = _escalatable(case, cmd)
    except CaseRuleError:
        return False
    return open_escalation_of(case, task) is not None


def escalated_by(case: CaseSnapshot) -> tuple[EscalationLink, bool]:
    """After `escalate`: the escalation it opened or joined, and whether it joined."""
    last = case.history[-1] if case.history else None
    if last is not None and last.event == "escalation_joined":
        joined = next(e for e in case.escalations if e.id == last.detail["escalation_id"])
        return joined, True
    return case.escalations[-1], False


def note_delivered(case: CaseSnapshot, note: EscalationNote) -> None:
    case.escalation_notes.remove(note)
    case.revision += 1  # the read model's copy must not keep it pending


def note_undeliverable(case: CaseSnapshot, note: EscalationNote, now: datetime) -> None:
    """The escalation ended before the note reached it: open a new one, as asked."""
    case.escalation_notes.remove(note)
    _escalate_instead_of(case, note.escalation_id, note.by, note.note, now, "ended")


# Told by an escalation that a note reached it after it was resolved.
NOTE_DECLINED = "note_declined"


def _escalate_instead_of(
    case: CaseSnapshot, escalation_id: str, by: str, reason: str, now: datetime, why: str
) -> None:
    link = next(e for e in case.escalations if e.id == escalation_id)
    task = case.task(link.task_id) if link.task_id else None
    record(
        case,
        now,
        "escalation_requested",
        task=task,
        actor=by,
        note=reason,
        detail={"instead_of": link.id, "why": f"{link.id} {why} before the note reached it"},
    )
    add_escalation(case, task, "manual", reason, by, now, 0)


def record_escalation_event(case: CaseSnapshot, event: EscalationEvent, now: datetime) -> None:
    """What a lead did on an escalation, told by the escalation workflow."""
    link = next((e for e in case.escalations if e.id == event.escalation_id), None)
    if event.event == NOTE_DECLINED and link is not None:
        # A raise joined it just as a lead resolved it: the raise becomes its own escalation.
        link.status = event.status or link.status
        _escalate_instead_of(
            case, link.id, event.actor or "", event.note or "", now, "was resolved"
        )
        return
    if link is not None and event.status:
        link.status = event.status
    record(
        case,
        now,
        f"escalation_{event.event}",
        actor=event.actor,
        note=event.note,
        detail={"escalation_id": event.escalation_id},
    )


def format_late(seconds: float) -> str:
    """'2h 15m' style, for people."""
    delta = timedelta(seconds=round(seconds))
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs and not hours else "",
    ]
    return " ".join(p for p in parts if p) or "0s"


def check_apply_calendars(case: CaseSnapshot, cmd: ApplyCalendars) -> None:
    if cmd.actor.role != Role.ADMIN:
        raise CaseRuleError("forbidden", f"role {cmd.actor.role.value} may not change calendars")
    if case.status == CaseStatus.CLOSED:
        raise CaseRuleError("conflict", f"case {case.id} is closed")


def apply_calendars(case: CaseSnapshot, cmd: ApplyCalendars, now: datetime) -> list[str]:
    """Count the case's clocks on changed calendars; the names of the calendars that moved.

    Each change is on the case's history (which calendar, from which facts to which, each
    live task's new deadline), and the workflow re-arms its timer on the new deadlines.
    """
    check_apply_calendars(case, cmd)
    changed = []
    for facts in cmd.calendars:
        before = case.calendars.get(facts.name)
        digest = pin(facts)
        if before is None or before == digest:
            continue  # a calendar this case does not count on, or no change
        case.calendars = {**case.calendars, facts.name: digest}
        moved = {}
        for task in case.tasks:
            if task.status == TaskStatus.DONE or task.sla is None:
                continue
            if task.sla.calendar == facts.name and task.sla.calendar_digest is not None:
                task.sla = task.sla.on_calendar(digest)
                refresh_sla(task)
                moved[task.id] = task.sla_due.isoformat() if task.sla_due else None
        record(
            case,
            now,
            "calendar_applied",
            actor=cmd.actor.name,
            detail={"calendar": facts.name, "from": before, "to": digest, "sla_due": moved},
        )
        changed.append(facts.name)
    return changed
