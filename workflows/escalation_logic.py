"""How an escalation climbs its route and what leads may do: pure functions."""

from __future__ import annotations

from datetime import datetime, timedelta

from access.policy import Action, refuse_escalation, refuse_role
from domain.case_models import HistoryEntry
from domain.escalation_models import (
    EscalationInput,
    EscalationKind,
    EscalationSnapshot,
    EscalationStatus,
    LeadAction,
)
from escalations.calendars import pin
from escalations.sla_clock import SlaClock
from workflows.case_logic import CaseRuleError
from workflows.case_sla import format_late

# What a lead may do on an escalation, and the status each action leaves it in.
ACTIONS = {
    "acknowledge": EscalationStatus.ACKNOWLEDGED,
    "reassign": EscalationStatus.ACKNOWLEDGED,
    "approve": EscalationStatus.RESOLVED,
    "reject": EscalationStatus.RESOLVED,
    "resolve": EscalationStatus.RESOLVED,
}
# What each lead action is in the policy (access/policy.py).
POLICY_ACTION = {
    "acknowledge": Action.BOARD_ACT,
    "reassign": Action.REASSIGN,
    "approve": Action.APPROVE,
    "reject": Action.APPROVE,
    "resolve": Action.BOARD_ACT,
}


def open_escalation(inp: EscalationInput, now: datetime) -> EscalationSnapshot:
    first = inp.route.levels[0]
    esc = EscalationSnapshot(
        id=inp.escalation_id,
        case_id=inp.case_id,
        case_type=inp.case_type,
        task_id=inp.task_id,
        step=inp.step,
        kind=inp.kind,
        reason=inp.reason,
        region=inp.region,
        vendor=inp.vendor,
        level_name=first.name,
        queue=first.queue,
        opened_by=inp.opened_by,
        opened_at=now,
    )
    _start_level_clock(esc, inp, now)
    _record(esc, now, "escalation_opened", inp.opened_by, inp.reason)
    return esc


def _start_level_clock(esc: EscalationSnapshot, inp: EscalationInput, now: datetime) -> None:
    level = inp.route.levels[esc.level]
    digest = pin(inp.calendar) if inp.calendar else None
    esc.due_at = SlaClock.start(inp.region, level.sla, now, calendar_digest=digest).due_at()
    esc.level_breached = False


def level_deadline(esc: EscalationSnapshot) -> datetime | None:
    if esc.status == EscalationStatus.RESOLVED or esc.level_breached:
        return None
    return esc.due_at


def breach_level(esc: EscalationSnapshot, inp: EscalationInput, now: datetime) -> bool:
    """The current level missed its SLA: move up a level. False when there is none above."""
    _record(esc, now, "escalation_level_breached", None, f"{esc.level_name} SLA breached")
    if esc.level + 1 >= len(inp.route.levels):
        esc.level_breached = True
        return False
    esc.level += 1
    level = inp.route.levels[esc.level]
    esc.level_name, esc.queue, esc.status, esc.owner = (
        level.name,
        level.queue,
        EscalationStatus.OPEN,
        None,
    )
    _start_level_clock(esc, inp, now)
    _record(esc, now, "escalation_raised", None, f"raised to {level.name} ({level.queue})")
    return True


def notice_context(esc: EscalationSnapshot, inp: EscalationInput, now: datetime) -> dict[str, str]:
    """What the notice to the current level says: the lateness as it is now (a task's SLA
    breach keeps growing while the levels climb), and which level let it run out."""
    late = ""
    if esc.kind == EscalationKind.SLA_BREACH:
        breached_at = inp.breached_at or esc.opened_at - timedelta(seconds=inp.late_by_seconds)
        seconds = (now - breached_at).total_seconds()
        late = format_late(seconds) if seconds >= 1 else ""  # at the breach itself: not late yet
    missed = ""
    if esc.level > 0:
        below = inp.route.levels[esc.level - 1]
        missed = f"{below.name} ({below.queue}) did not act within {below.sla}"
    return {
        "case_id": esc.case_id,
        "escalation_id": esc.id,
        "step": esc.step or "",
        "task_id": esc.task_id or "",
        "queue": esc.queue,
        "level_name": esc.level_name,
        "reason": esc.reason,
        "opened_by": esc.opened_by,
        "late_by": late,
        "level_missed": missed,
        "link": f"{inp.public_url}/cases/{esc.case_id}",
    }


def check_action(esc: EscalationSnapshot, action: LeadAction) -> None:
    """The validator's check: the policy (role and vendor), then the state."""
    _check_known(action)
    refusal = refuse_escalation(action.actor, POLICY_ACTION[action.action], esc.id, esc.vendor)
    if refusal:
        raise CaseRuleError.of(refusal)
    _check_state(esc, action)


def _check_known(action: LeadAction) -> None:
    if action.action not in ACTIONS:
        raise CaseRuleError(
            "invalid", f"unknown action {action.action!r}; one of: " + ", ".join(ACTIONS)
        )


def _check_state(esc: EscalationSnapshot, action: LeadAction) -> None:
    # The role check handlers always made (the policy gives these actions to the same
    # roles); the vendor scope is the validator's alone, so recorded actions replay.
    refusal = refuse_role(action.actor, POLICY_ACTION[action.action])
    if refusal:
        raise CaseRuleError.of(refusal)
    if esc.status == EscalationStatus.RESOLVED:
        raise CaseRuleError("conflict", f"escalation {esc.id} is already resolved")


def apply_action(esc: EscalationSnapshot, action: LeadAction, now: datetime) -> None:
    _check_known(action)
    _check_state(esc, action)
    esc.status = ACTIONS[action.action]
    if esc.owner is None or action.action == "acknowledge":
        esc.owner = action.actor.name
    if esc.status == EscalationStatus.RESOLVED:
        esc.resolved_at, esc.resolution_note = now, action.note
    _record(esc, now, f"escalation_{action.action}", action.actor.name, action.note, action.detail)


def add_note(esc: EscalationSnapshot, by: str, note: str, now: datetime) -> bool:
    """A manual escalation of the same work joined this one: recorded and counted. False
    when it came after a lead resolved this one (the case then opens a new escalation)."""
    if esc.status == EscalationStatus.RESOLVED:
        return False
    esc.joined += 1
    _record(esc, now, "escalation_note", by, note, {"raised_again": esc.joined})
    return True


def settle(esc: EscalationSnapshot, by: str, outcome: str, note: str | None, now: datetime) -> None:
    """The escalated task was decided on the case itself (an approval completed as a task):
    the escalation is resolved with that decision, unless a lead resolved it already."""
    if esc.status == EscalationStatus.RESOLVED:
        return
    esc.status, esc.owner = EscalationStatus.RESOLVED, esc.owner or by
    esc.resolved_at, esc.resolution_note = now, note
    _record(esc, now, f"escalation_{outcome}", by, note, {"decided_on": "task"})


def _record(
    esc: EscalationSnapshot,
    now: datetime,
    event: str,
    actor: str | None,
    note: str | None,
    detail: dict[str, object] | None = None,
) -> None:
    esc.history.append(
        HistoryEntry(
            at=now,
            event=event,
            actor=actor,
            note=note,
            task_id=esc.task_id,
            step=esc.step,
            detail={"level": esc.level_name, "queue": esc.queue, **(detail or {})},
        )
    )
    esc.revision += 1
