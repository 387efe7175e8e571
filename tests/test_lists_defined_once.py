"""Lists defined once: step kinds, case types and billing actions each have one definition,
and every table keyed by them (the step registry, validation, id prefixes, billing's calls)
covers exactly that list."""

from __future__ import annotations

from activities.billing import ACTIONS
from domain.values import CASE_ID_PREFIX, CASE_TYPES
from sop_templates.schema import BILLING_ACTIONS, STEP_KINDS, STEP_MODELS
from sop_templates.validation import STEP_CHECKS
from workflows.steps import KINDS


def test_the_registry_has_a_handler_for_every_step_kind_of_the_schema_and_no_other() -> None:
    assert set(KINDS) == set(STEP_KINDS)
    for name, handler in KINDS.items():
        assert handler.kind == name


def test_validation_checks_every_step_kind_of_the_schema() -> None:
    assert set(STEP_CHECKS) == set(STEP_MODELS)


def test_every_case_type_has_an_id_prefix_of_its_own() -> None:
    assert set(CASE_ID_PREFIX) == set(CASE_TYPES)
    assert len(set(CASE_ID_PREFIX.values())) == len(CASE_TYPES)


def test_every_billing_action_an_sop_may_name_is_one_the_activity_calls() -> None:
    assert set(ACTIONS) == set(BILLING_ACTIONS)
