"""What every rule about a case builds on: pure, deterministic, no I/O, no clock.

The case-level rules (`case_logic.py`: claims, completion, migration, stalls), the step
kinds (`workflows/steps/`) and the SLA rules (`case_sla.py`) all record history entries,
number tasks, refuse commands and evaluate SOP expressions the same way: here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from access.policy import Refusal
from domain.case_models import (
    CaseSnapshot,
    EscalationLink,
    HistoryEntry,
    SlaState,
    Task,
    TaskStatus,
)
from sop_templates.expressions import ExpressionError, compile_expression
from sop_templates.schema import SopTemplate
from sop_templates.validation import CASE_FIELDS

# What a person may decide on a task about a billing refusal or an unsendable email.
ERROR_OUTCOMES = ["retry", "skip"]


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


@dataclass(frozen=True)
class Move:
    """Where a step sends the case next, and the task whose work that step reads (`task.*`).
    Step kinds answer a Move; `case_logic` alone enters steps (and turns an SOP error on the
    way into work for a person)."""

    step: str
    last_task: Task | None


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


def entries_of(case: CaseSnapshot, event: str, step: str) -> int:
    """How many `event` entries of `step` the case has recorded, in all its runs."""
    here = sum(1 for h in case.history if h.event == event and h.step == step)
    return case.earlier_counts.get(f"{event}:{step}", 0) + here


def next_task_id(case: CaseSnapshot) -> str:
    """Task ids count every task the case ever had, also those of earlier runs."""
    return f"{case.id}.t{case.earlier_tasks + len(case.tasks) + 1}"


def last_completed_task(case: CaseSnapshot) -> Task | None:
    done = [t for t in case.tasks if t.status == TaskStatus.DONE and t.completed_at]
    return max(done, key=lambda t: t.completed_at or t.created_at, default=None)


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


def action_context(case: CaseSnapshot, template: SopTemplate) -> dict[str, Any]:
    return condition_context(case, template, last_completed_task(case))


def evaluate(case: CaseSnapshot, template: SopTemplate, source: str) -> Any:
    """A template expression's value for this case (e.g. a billing argument, an address)."""
    try:
        return compile_expression(source).evaluate(action_context(case, template))
    except ExpressionError as exc:
        raise CaseRuleError("invalid", f"step {case.current_step!r}: {exc}") from exc


def open_error_task(
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
