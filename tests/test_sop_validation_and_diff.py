"""Template validation (every error at once, with its path) and the structural diff (pure)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from sop_templates.diff import Change, diff_templates, render_text
from sop_templates.registry import shipped_documents
from sop_templates.schema import SopTemplate
from sop_templates.validation import InvalidTemplateError, known_queue_patterns, parse_template


def _dispute() -> dict[str, Any]:
    return copy.deepcopy(next(d for d in shipped_documents() if d["name"] == "dispute"))


def _step(document: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in document["steps"] if s["id"] == step_id)


def _at(document: dict[str, Any], step_id: str) -> str:
    """The path of a step in the document, as errors name it."""
    return f"steps[{[s['id'] for s in document['steps']].index(step_id)}]"


def _errors(document: dict[str, Any]) -> dict[str, str]:
    """path -> message of every error (one error per path in these tests)."""
    with pytest.raises(InvalidTemplateError) as raised:
        parse_template(document)
    found = {e.path: e.message for e in raised.value.errors}
    assert len(found) == len(raised.value.errors), raised.value.errors
    return found


def test_the_shipped_templates_are_valid() -> None:
    for document in shipped_documents():
        parse_template(document)


def test_a_document_with_several_faults_lists_every_error_with_its_path() -> None:
    document = _dispute()
    triage = _step(document, "triage")
    triage["queue"] = "dispute-tier1"  # typo: the organisation runs disputes-*
    triage["sla"] = {"budget": "4 hours", "calendar": "MARS"}
    _step(document, "investigate")["priority"] = "high"  # a schema error in another step
    _step(document, "await_customer")["transitions"]["info_recieved"] = "investigate"
    _step(document, "approval_route")["branches"][0]["when"] = (
        "case.amount > params.approval_treshold"
    )
    _step(document, "lead_approval")["transitions"]["approve"] = "closed_credted"

    errors = _errors(document)

    triage, investigate = _at(document, "triage"), _at(document, "investigate")
    awaiting, route = _at(document, "await_customer"), _at(document, "approval_route")
    approval = _at(document, "lead_approval")
    assert set(errors) == {
        f"{triage}.queue",
        f"{triage}.sla.budget",
        f"{triage}.sla.calendar",
        f"{investigate}.priority",
        f"{awaiting}.transitions.info_recieved",
        f"{route}.branches[0].when",
        f"{approval}.transitions.approve",
    }
    assert errors[f"{triage}.queue"].startswith("unknown queue 'dispute-tier1'")
    assert "'4 hours' does not parse" in errors[f"{triage}.sla.budget"]
    assert errors[f"{triage}.sla.calendar"].startswith("unknown calendar 'MARS'")
    assert "valid integer" in errors[f"{investigate}.priority"]
    message = errors[f"{awaiting}.transitions.info_recieved"]
    assert message == "outcome 'info_recieved' is not declared"
    assert "params has no field 'approval_treshold'" in errors[f"{route}.branches[0].when"]
    assert errors[f"{approval}.transitions.approve"] == "unknown step 'closed_credted'"


@pytest.mark.parametrize("budget", ["4x", "0h", "h4", "", "4 hours", "2h1d"])
def test_an_sla_budget_that_does_not_parse_is_reported(budget: str) -> None:
    document = _dispute()
    _step(document, "investigate")["sla"] = {"budget": budget}
    assert list(_errors(document)) == [f"{_at(document, 'investigate')}.sla.budget"]


@pytest.mark.parametrize("calendar", ["24x7", "SG", "US"])
def test_configured_calendars_are_accepted(calendar: str) -> None:
    document = _dispute()
    _step(document, "triage")["sla"] = {"budget": "1d4h", "calendar": calendar}
    parse_template(document)


@pytest.mark.parametrize(
    "queue", ["disputes-tier1", "collections-eu", "credit-review", "tier2-x", "ar-leads"]
)
def test_queues_matching_queues_yaml_are_known(queue: str) -> None:
    document = _dispute()
    _step(document, "triage")["queue"] = queue
    parse_template(document)


@pytest.mark.parametrize("queue", ["dispute-tier1", "o2c-manager", "leads", "billing"])
def test_other_queues_are_unknown(queue: str) -> None:
    document = _dispute()
    _step(document, "triage")["queue"] = queue
    assert _errors(document)[f"{_at(document, 'triage')}.queue"].startswith(
        f"unknown queue {queue!r}"
    )


def test_a_malformed_queue_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "queues.yaml"
    bad.write_text("queues: disputes-*\n")
    with pytest.raises(ValueError, match="list of queue names"):
        known_queue_patterns(bad)


def test_conditions_read_only_the_templates_own_parameters() -> None:
    document = _dispute()
    document["parameters"] = {"limit": 500}
    assert list(_errors(document)) == [f"{_at(document, 'approval_route')}.branches[0].when"]
    _step(document, "approval_route")["branches"][0]["when"] = "case.amount > params.limit"
    parse_template(document)


def test_unknown_unreachable_and_dead_end_steps_are_reported() -> None:
    document = _dispute()
    document["steps"].append(
        {"id": "orphan", "kind": "end", "resolution": "never"},
    )
    _step(document, "await_customer")["transitions"]["no_response"] = "await_customer"
    _step(document, "investigate")["transitions"]["invalid"] = "await_customer"
    _step(document, "investigate")["transitions"]["valid"] = "await_customer"
    errors = _errors(document)
    assert errors[_at(document, "orphan")] == "step 'orphan' is unreachable from the start"
    # investigate <-> await_customer now loop forever; nothing else reaches the credit path.
    dead = "has no way to an end step"
    assert errors[_at(document, "investigate")] == f"step 'investigate' {dead}"
    assert errors[_at(document, "await_customer")] == f"step 'await_customer' {dead}"
    assert errors[_at(document, "notify_rejected")].endswith("is unreachable from the start")


# ------------------------------------------------------------------------------ diff


def _template(document: dict[str, Any]) -> SopTemplate:
    return SopTemplate.model_validate(document)


def _v2(change: Any) -> tuple[SopTemplate, SopTemplate]:
    before = _dispute()
    after = copy.deepcopy(before)
    after["version"] = 2
    change(after)
    return _template(before), _template(after)


def test_identical_versions_have_no_changes() -> None:
    before, after = _v2(lambda d: d["steps"].reverse())  # the order of steps does not matter
    assert diff_templates(before, after) == []
    assert render_text([], "dispute", 1, 2) == "dispute v1 -> v2: no differences"


def test_a_changed_threshold_and_an_added_step() -> None:
    def change(d: dict[str, Any]) -> None:
        d["parameters"]["approval_threshold"] = 500
        _step(d, "triage")["transitions"]["accept"] = "review_evidence"
        d["steps"].insert(
            1,
            {
                "id": "review_evidence",
                "kind": "human_task",
                "queue": "disputes-tier1",
                "outcomes": ["done"],
                "transitions": {"done": "investigate"},
            },
        )

    changes = diff_templates(*_v2(change))

    assert changes[:2] == [
        Change("parameters.approval_threshold", "changed", 1000, 500),
        Change("steps.triage.transitions.accept", "changed", "investigate", "review_evidence"),
    ]
    added = changes[2]
    assert (added.path, added.change, added.before) == ("steps.review_evidence", "added", None)
    assert added.after["queue"] == "disputes-tier1" and added.after["kind"] == "human_task"
    assert len(changes) == 3


def test_step_fields_slas_branches_reason_codes_and_a_rewritten_step() -> None:
    def change(d: dict[str, Any]) -> None:
        d["reason_codes"].remove("tax")
        d["reason_codes"].append("freight")
        triage = _step(d, "triage")
        triage["queue"] = "disputes-tier2"
        triage["priority"] = 60
        triage["sla"] = {"budget": "2h", "calendar": "24x7"}
        triage["outcomes"].append("duplicate")
        triage["transitions"]["duplicate"] = "closed_not_a_dispute"
        _step(d, "approval_route")["branches"][0]["when"] = "case.amount > 500"
        del _step(d, "investigate")["sla"]
        d["steps"] = [s for s in d["steps"] if s["id"] != "closed_not_a_dispute"]
        d["steps"].append({"id": "closed_not_a_dispute", "kind": "end", "resolution": "dropped"})

    changes = {
        (c.path, c.change, repr(c.before), repr(c.after)) for c in diff_templates(*_v2(change))
    }

    assert changes == {
        ("reason_codes", "removed", "'tax'", "None"),
        ("reason_codes", "added", "None", "'freight'"),
        ("steps.triage.queue", "changed", "'disputes-tier1'", "'disputes-tier2'"),
        ("steps.triage.priority", "changed", "50", "60"),
        ("steps.triage.outcomes", "added", "None", "'duplicate'"),
        ("steps.triage.transitions.duplicate", "added", "None", "'closed_not_a_dispute'"),
        ("steps.triage.sla.budget", "changed", "'4h'", "'2h'"),
        ("steps.triage.sla.calendar", "added", "None", "'24x7'"),
        (
            "steps.investigate.sla",
            "removed",
            "{'budget': '2d', 'calendar': None, 'warning': 0.8}",
            "None",
        ),
        (
            "steps.approval_route.branches[0].when",
            "changed",
            "'(case.data.finding.credit_amount or case.amount) > params.approval_threshold'",
            "'case.amount > 500'",
        ),
        ("steps.closed_not_a_dispute.title", "changed", "'Not a dispute'", "''"),
        ("steps.closed_not_a_dispute.resolution", "changed", "'not_a_dispute'", "'dropped'"),
    }


def test_a_removed_step_and_a_new_start() -> None:
    def change(d: dict[str, Any]) -> None:
        d["start"] = "investigate"
        d["steps"] = [s for s in d["steps"] if s["id"] != "triage"]

    changes = diff_templates(*_v2(change))
    assert changes[0] == Change("start", "changed", "acknowledge", "investigate")
    assert [(c.path, c.change) for c in changes[1:]] == [("steps.triage", "removed")]


def test_the_text_rendering_marks_each_change() -> None:
    changes = [
        Change("parameters.approval_threshold", "changed", 1000, 500),
        Change("reason_codes", "added", after="freight"),
        Change("steps.triage", "removed", before={"kind": "human_task"}),
    ]
    assert render_text(changes, "dispute", 1, 3).splitlines() == [
        "dispute v1 -> v3: 3 changes",
        "  ~ parameters.approval_threshold: 1000 -> 500",
        '  + reason_codes: "freight"',
        '  - steps.triage: {"kind": "human_task"}',
    ]


def test_a_compute_steps_expressions_and_next_are_checked() -> None:
    document = copy.deepcopy(next(d for d in shipped_documents() if d["name"] == "credit_review"))
    score = _step(document, "score")
    score["set"]["bonus"] = "params.no_such_parameter * 2"
    score["next"] = "nowhere"
    errors = _errors(document)
    at = _at(document, "score")
    assert {f"{at}.set.bonus", f"{at}.next"} <= set(errors)
    assert errors[f"{at}.next"] == "unknown step 'nowhere'"
    assert "no_such_parameter" in errors[f"{at}.set.bonus"]


def test_a_schema_error_in_any_kind_of_step_is_named_by_the_documents_path() -> None:
    # The step's kind is pydantic's tag of the union, not part of the document's path.
    document = _dispute()
    acknowledge = next(s for s in document["steps"] if s["kind"] == "email")
    credit = next(s for s in document["steps"] if s["kind"] == "billing")
    del acknowledge["template"]
    credit["error_queue"] = 7

    errors = _errors(document)

    assert set(errors) == {
        f"{_at(document, acknowledge['id'])}.template",
        f"{_at(document, credit['id'])}.error_queue",
    }
