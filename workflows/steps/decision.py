"""`decision`: the first branch whose condition holds picks the next step, else `otherwise`."""

from __future__ import annotations

from datetime import datetime

from domain.case_models import CaseSnapshot, Task
from sop_templates.expressions import ExpressionError, compile_expression
from sop_templates.schema import DecisionStep, SopTemplate
from workflows.case_core import CaseRuleError, condition_context
from workflows.steps.base import StepKind


def enter(
    case: CaseSnapshot, template: SopTemplate, step: DecisionStep, now: datetime, last: Task | None
) -> str:
    context = condition_context(case, template, last)
    for branch in step.branches:
        try:
            if compile_expression(branch.when).evaluate(context):
                return branch.goto
        except ExpressionError as exc:
            # A condition that cannot be evaluated must not pick a branch silently.
            raise CaseRuleError("invalid", f"step {step.id!r}: {exc}") from exc
    return step.otherwise


def after(step: DecisionStep) -> str:
    return step.otherwise


KIND: StepKind[DecisionStep] = StepKind(DecisionStep, enter=enter, after=after)
