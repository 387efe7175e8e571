"""The shape of a step kind's handler, and what the kinds carried out by an activity share.

A kind answers where the case goes (a step id, a `Move`) and never enters a step itself:
`case_logic` does, so an SOP error on the way becomes work for a person in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from domain.case_models import CaseSnapshot, CompleteTask, PendingAction, Task
from sop_templates.schema import AnyStep, BillingStep, EmailStep, SopTemplate, kind_of_model
from workflows.case_core import Move, entries_of

S = TypeVar("S", bound=AnyStep)

# Entering a step: None when the case now waits here (a task, a timer, a call, its end),
# else the step to go on to at once (`last_task` is what that step reads as `task.*`).
Enter = Callable[[CaseSnapshot, SopTemplate, S, datetime, Task | None], str | None]
# A person completed a task of this step (not an SOP error's task: case_logic decides those).
Completed = Callable[[CaseSnapshot, SopTemplate, S, Task, CompleteTask, datetime], Move | None]
# The step's pending call (an email, a billing call) went through with this result.
Done = Callable[[CaseSnapshot, SopTemplate, S, dict[str, Any], datetime], Move]


def _no_task(
    case: CaseSnapshot,
    template: SopTemplate,
    step: AnyStep,
    task: Task,
    cmd: CompleteTask,
    now: datetime,
) -> Move | None:
    raise AssertionError(f"step {step.id!r} is a {step.kind} step: it has no task to complete")


def _no_call(
    case: CaseSnapshot, template: SopTemplate, step: AnyStep, result: dict[str, Any], now: datetime
) -> Move:
    raise AssertionError(f"step {step.id!r} is a {step.kind} step: it makes no call")


def _nothing_after(step: AnyStep) -> str | None:
    return None


@dataclass(frozen=True)
class StepKind(Generic[S]):
    """What the interpreter does with one kind of step (`model`, the schema's)."""

    model: type[S]
    enter: Enter[S]
    # Where a person's `skip` of an SOP error at this step goes (None: nowhere, use goto).
    after: Callable[[S], str | None] = field(default=_nothing_after)
    completed: Completed[S] = field(default=_no_task)
    done: Done[S] = field(default=_no_call)

    @property
    def kind(self) -> str:
        return kind_of_model(self.model)


def pend(case: CaseSnapshot, step: EmailStep | BillingStep) -> None:
    """The case waits on the step's call: the same key on every retry of this call, a new
    one if the case comes back to the step (it counts the step's entries, in all runs)."""
    entered = entries_of(case, "step_entered", step.id)
    key = f"{case.id}:{step.id}:{entered}"
    case.pending_action = PendingAction(step=step.id, kind=step.kind, idempotency_key=key)
