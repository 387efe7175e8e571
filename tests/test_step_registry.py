"""The step kinds: one module each behind the registry, which knows exactly the schema's kinds."""

from __future__ import annotations

from sop_templates.schema import STEP_KINDS
from sop_templates.validation import STEP_CHECKS
from workflows.steps import KINDS


def test_the_registry_has_a_handler_for_every_step_kind_of_the_schema_and_no_other() -> None:
    assert set(KINDS) == set(STEP_KINDS)
    for name, handler in KINDS.items():
        assert handler.kind == name


def test_validation_checks_every_step_kind_of_the_schema() -> None:
    assert set(STEP_CHECKS) == set(STEP_KINDS)
