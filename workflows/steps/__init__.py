"""The step kinds of an SOP, one module each, behind one registry: kind -> `StepKind`.

`case_logic` enters steps and decides tasks through `kind_of(step)`; a new step kind is a
model in `sop_templates/schema.py` (and its checks in `validation.py`) plus a module here,
registered below. `tests/test_lists_defined_once.py` holds the registry to the schema's kinds.
"""

from __future__ import annotations

from typing import Any

from sop_templates.schema import AnyStep
from workflows.steps import billing, compute, decision, email, end, human_task, wait
from workflows.steps.base import StepKind

KINDS: dict[str, StepKind[Any]] = {
    k.kind: k
    for k in (
        human_task.KIND,
        decision.KIND,
        compute.KIND,
        end.KIND,
        email.KIND,
        billing.KIND,
        wait.KIND,
    )
}


def kind_of(step: AnyStep) -> StepKind[Any]:
    return KINDS[step.kind]
