"""`compute`: work values out with expressions into `case.data[store_as]`, then go on."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.case_models import CaseSnapshot, Task
from sop_templates.expressions import ExpressionError, compile_expression
from sop_templates.schema import ComputeStep, SopTemplate
from workflows.case_core import CaseRuleError, condition_context, record
from workflows.steps.base import StepKind


def enter(
    case: CaseSnapshot, template: SopTemplate, step: ComputeStep, now: datetime, last: Task | None
) -> str:
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
    return step.next


def after(step: ComputeStep) -> str:
    return step.next


KIND: StepKind[ComputeStep] = StepKind(ComputeStep, enter=enter, after=after)
