"""`end`: the case closes with the step's resolution."""

from __future__ import annotations

from datetime import datetime

from domain.case_models import CaseSnapshot, CaseStatus, Task
from sop_templates.schema import EndStep, SopTemplate
from workflows.case_core import record
from workflows.steps.base import StepKind


def enter(
    case: CaseSnapshot, template: SopTemplate, step: EndStep, now: datetime, last: Task | None
) -> None:
    case.status, case.resolution, case.closed_at = CaseStatus.CLOSED, step.resolution, now
    record(case, now, "case_closed", step=step.id, detail={"resolution": step.resolution})


KIND: StepKind[EndStep] = StepKind(EndStep, enter=enter)
