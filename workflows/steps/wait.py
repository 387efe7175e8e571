"""`wait`: a Temporal timer, until a date the SOP reads (plus grace) or after a duration."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from domain.case_models import CaseSnapshot, Task
from escalations.calendars import get_calendar
from escalations.sla_clock import InvalidBudgetError, parse_budget
from sop_templates.schema import SopTemplate, WaitStep
from workflows.case_core import CaseRuleError, Move, evaluate, last_completed_task, record
from workflows.steps.base import StepKind


def enter(
    case: CaseSnapshot, template: SopTemplate, step: WaitStep, now: datetime, last: Task | None
) -> None:
    case.waiting_until = _wait_end(case, template, step, now)
    record(case, now, "waiting", step=step.id, detail={"until": case.waiting_until.isoformat()})


def over(case: CaseSnapshot, template: SopTemplate, now: datetime) -> Move:
    """The wait step's timer fired: the case goes on to its next step."""
    step = template.step(case.current_step or "")
    assert isinstance(step, WaitStep)
    case.waiting_until = None
    record(case, now, "wait_over", step=step.id)
    return Move(step.next, last_completed_task(case))


def after(step: WaitStep) -> str:
    return step.next


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


KIND: StepKind[WaitStep] = StepKind(WaitStep, enter=enter, after=after)
