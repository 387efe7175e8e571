"""Money controls, as pure rules: every path to a billing write re-checks the SOP's approval
rule against the amount actually sent, the call stays on the case's customer and invoices,
and task data is typed. The same rules run inside the workflow (see test_money_e2e.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.case_models import (
    Actor,
    CaseSnapshot,
    ClaimTask,
    CompleteTask,
    ReleaseTask,
    Role,
    Task,
    TaskStatus,
)
from sop_templates.registry import validated
from sop_templates.schema import BillingStep, SopTemplate
from sop_templates.validation import InvalidTemplateError, parse_template
from tests.harness import AGENT, LEAD, case_input, past_intake, shipped_document
from workflows import case_logic, money_rules
from workflows.case_logic import CaseRuleError
from workflows.task_fields import field_errors

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
INVOICES = ["INV-A", "INV-B"]
REFUSED = {"code": "amount_above_open_balance", "message": "too much", "status": 422}


def _open(amount: str = "800.00", version: int | None = None) -> tuple[CaseSnapshot, SopTemplate]:
    inp = case_input("dispute", amount, invoice_ids=INVOICES, version=version)
    case = case_logic.open_case(inp, NOW)
    past_intake(case, inp.template, NOW)
    return case, inp.template


def _open_task(case: CaseSnapshot, step: str) -> Task:
    return next(t for t in case.tasks if t.step == step and t.status != TaskStatus.DONE)


def _work(
    case: CaseSnapshot,
    template: SopTemplate,
    step: str,
    outcome: str,
    actor: Actor = AGENT,
    data: dict[str, Any] | None = None,
) -> None:
    task = _open_task(case, step)
    actor = actor.model_copy(update={"queues": [task.queue]})
    # Each decision a minute after the last: the latest completed task is the one just done.
    now = NOW + timedelta(minutes=len(case.history))
    case_logic.claim(case, ClaimTask(task_id=task.id, actor=actor), now)
    cmd = CompleteTask(task_id=task.id, actor=actor, outcome=outcome, data=data or {})
    case_logic.complete(case, template, cmd, now)


def _billing(case: CaseSnapshot, template: SopTemplate) -> tuple[BillingStep, dict[str, Any]]:
    """The pending billing step and the args the workflow would send."""
    assert case.pending_action is not None, case.current_step
    step = template.step(case.pending_action.step)
    assert isinstance(step, BillingStep)
    return step, {k: case_logic.evaluate(case, template, v) for k, v in step.args.items()}


def _may_call(case: CaseSnapshot, template: SopTemplate) -> bool:
    step, args = _billing(case, template)
    return case_logic.check_billing_call(case, template, step, args, NOW)


def _refused_then_retried(data: dict[str, Any], amount: str = "800.00") -> tuple[Any, Any]:
    """The attack: a small credit that billing refuses, then an agent's retry with `data`."""
    case, template = _open(amount)
    _work(case, template, "triage", "accept")
    _work(case, template, "investigate", "valid", data={"invoice_id": "INV-A"})
    assert _may_call(case, template)  # 800.00: below the threshold, no lead needed
    case_logic.action_refused(case, template, REFUSED, NOW)
    _work(case, template, "issue_credit", "retry", data=data)
    return case, template


# -- the approval rule ------------------------------------------------------------------------


def test_a_credit_below_the_threshold_goes_to_billing_without_a_lead() -> None:
    case, template = _open("999.99")
    _work(case, template, "triage", "accept")
    _work(case, template, "investigate", "valid")
    assert _may_call(case, template)
    assert not any(h.event == "approval_required" for h in case.history)


def test_a_retry_with_an_amount_above_the_threshold_goes_back_to_a_lead() -> None:
    case, template = _refused_then_retried({"credit_amount": "250000", "invoice_id": "INV-B"})
    assert not _may_call(case, template)

    assert case.pending_action is None and case.current_step == "lead_approval"
    required = [h for h in case.history if h.event == "approval_required"]
    assert [(h.step, h.detail["amount"], h.detail["above"]) for h in required] == [
        ("issue_credit", "250000", "1000")
    ]
    approval = _open_task(case, "lead_approval")
    assert approval.queue == "disputes-tier2"
    assert case.escalations[-1].kind == "approval" and case.escalations[-1].task_id == approval.id

    _work(case, template, "lead_approval", "approve", actor=LEAD)
    step, args = _billing(case, template)
    assert (args["amount"], args["invoice_id"]) == ("250000", "INV-B")
    assert case_logic.check_billing_call(case, template, step, args, NOW)
    [granted] = [h for h in case.history if h.event == "approval_granted"]
    assert granted.detail == {"billing_step": "issue_credit", "amount": "250000", "role": "lead"}


def test_an_approval_holds_for_exactly_the_amount_approved() -> None:
    case, template = _refused_then_retried({"credit_amount": "250000", "invoice_id": "INV-B"})
    assert not _may_call(case, template)
    _work(case, template, "lead_approval", "approve", actor=LEAD)
    assert _may_call(case, template)
    # Billing refuses the approved memo; the agent retries with another amount, then with
    # the approved one: neither is the lead's latest decision, so both go back to the lead.
    for amount in ("240000", "250000"):
        case_logic.action_refused(case, template, REFUSED, NOW)
        _work(case, template, "issue_credit", "retry", data={"credit_amount": amount})
        assert not _may_call(case, template), amount
        assert case.current_step == "lead_approval"
        required = [h for h in case.history if h.event == "approval_required"]
        assert required[-1].detail["amount"] == amount
        _work(case, template, "lead_approval", "approve", actor=LEAD)
        assert _may_call(case, template)


def test_a_lead_approving_another_amount_approves_that_amount() -> None:
    case, template = _open("5000.00")
    _work(case, template, "triage", "accept")
    _work(case, template, "investigate", "valid")
    _work(case, template, "lead_approval", "approve", actor=LEAD, data={"credit_amount": "4000"})
    step, args = _billing(case, template)
    assert args["amount"] == "4000"
    assert case_logic.check_billing_call(case, template, step, args, NOW)


@pytest.mark.parametrize("role", [Role.AGENT, Role.SOP_OWNER])
def test_only_a_lead_or_admin_can_approve(role: Role) -> None:
    case, template = _open("5000.00")
    _work(case, template, "triage", "accept")
    _work(case, template, "investigate", "valid")
    # Someone who is not an approver holds the approval task (an agent serving the lead
    # queue, say): the approval is refused at the door, and nothing changes.
    task = _open_task(case, "lead_approval")
    someone = Actor(name="sam", role=role, queues=[task.queue])
    task.status, task.assignee = TaskStatus.CLAIMED, someone.name
    before = case.model_copy(deep=True)
    cmd = CompleteTask(task_id=task.id, actor=someone, outcome="approve")
    with pytest.raises(CaseRuleError) as refused:
        case_logic.check_complete(case, cmd)
    assert refused.value.kind == "forbidden" and "may not approve" in refused.value.message
    assert case == before

    case_logic.release(case, ReleaseTask(task_id=task.id, actor=someone), NOW)
    admin = Actor(name="root", role=Role.ADMIN)
    _work(case, template, "lead_approval", "approve", actor=admin)
    assert _may_call(case, template)


def test_the_billing_call_checks_the_approvers_role_again() -> None:
    case, template = _open("5000.00")
    _work(case, template, "triage", "accept")
    _work(case, template, "investigate", "valid")
    _work(case, template, "lead_approval", "approve", actor=LEAD)
    [granted] = [h for h in case.history if h.event == "approval_granted"]
    granted.detail["role"] = Role.AGENT.value  # as if recorded for someone who may not approve
    assert not _may_call(case, template)
    assert case.current_step == "lead_approval"


def test_an_amount_that_is_not_a_decimal_goes_to_a_person() -> None:
    # Data taken free-form under v1 (no typed fields), the call then made under v2's rule
    # (as after a migration): the rule, not billing, refuses the amount.
    case, v1 = _open("800.00", version=1)
    _work(case, v1, "triage", "accept")
    _work(case, v1, "investigate", "valid", data={"credit_amount": "1.00001"})
    v2 = SopTemplate.model_validate(shipped_document("dispute", 2))
    assert not _may_call(case, v2)
    [refused] = [h for h in case.history if h.event == "billing_refused"]
    assert refused.detail["code"] == "invalid_amount" and "1.00001" in refused.detail["message"]
    assert _open_task(case, "issue_credit").queue == "disputes-tier1"


def _credit_review(limit_asked: str) -> tuple[CaseSnapshot, SopTemplate]:
    """A credit review (v2) past its exposure call: a good payer, nothing overdue."""
    inp = case_input("credit_review", limit_asked, reason_code="periodic")
    case = case_logic.open_case(inp, NOW)
    exposure = {
        "customer_id": inp.customer_id,
        "credit_limit": "25000.00",
        "open_amount": "1200.00",
        "overdue_amount": "0.00",
        "max_days_past_due": 0,
        "paid_invoices": 4,
        "paid_late": 0,
        "average_days_late": "0.0",
    }
    case_logic.action_done(case, inp.template, exposure, NOW)
    return case, inp.template


def test_a_credit_limit_above_the_threshold_is_set_only_as_a_lead_approved_it() -> None:
    case, template = _credit_review("40000.00")
    _work(case, template, "review", "propose", data={"credit_limit": "40000.00"})
    assert _may_call(case, template)  # below 50000: no lead
    step, args = _billing(case, template)
    assert (step.id, args["credit_limit"]) == ("update_limit", "40000.00")

    case, template = _credit_review("90000.00")
    _work(case, template, "review", "propose", data={"credit_limit": "90000.00"})
    assert case.current_step == "lead_approval"
    _work(case, template, "lead_approval", "approve", actor=LEAD)
    assert _may_call(case, template)
    # Billing refuses; the analyst's retry does not carry the lead's approval with it.
    case_logic.action_refused(case, template, REFUSED, NOW)
    _work(case, template, "update_limit", "retry")
    assert not _may_call(case, template)
    assert case.current_step == "lead_approval"
    assert [h.detail["amount"] for h in case.history if h.event == "approval_required"] == [
        "90000.00"
    ]


# -- the case's own customer and invoices --------------------------------------------------


def test_an_invoice_not_on_the_case_never_reaches_billing() -> None:
    case, template = _open("300.00", version=1)  # free-form data: only the run-time check
    _work(case, template, "triage", "accept")
    _work(case, template, "investigate", "valid", data={"invoice_id": "INV-OF-ANOTHER"})
    assert not _may_call(case, template)

    assert case.pending_action is None
    error_task = _open_task(case, "issue_credit")
    error = error_task.data["billing_error"]
    assert error["code"] == "invoice_not_on_case" and "INV-OF-ANOTHER" in error["message"]
    assert error_task.allowed_outcomes == ["retry", "skip"]


def test_a_customer_other_than_the_cases_never_reaches_billing() -> None:
    case, template = _open("300.00")
    _work(case, template, "triage", "accept")
    _work(case, template, "investigate", "valid")
    step, args = _billing(case, template)
    assert not case_logic.check_billing_call(
        case, template, step, {**args, "customer_id": "SOMEONE-ELSE"}, NOW
    )
    assert _open_task(case, "issue_credit").data["billing_error"]["code"] == (
        "customer_not_on_case"
    )


# -- typed task data ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"invoice_id": "INV-1/payments?"}, "data.invoice_id"),
        ({"invoice_id": "INV-OF-ANOTHER"}, "data.invoice_id"),
        ({"credit_amount": "\u0661\u0662\u0663"}, "data.credit_amount"),  # Arabic-Indic digits
        ({"credit_amount": 250000}, "data.credit_amount"),  # a number, not decimal text
        ({"credit_amount": "-5"}, "data.credit_amount"),
        ({"root_cause": "x" * 501}, "data.root_cause"),
        ({"root_cause": "line\nbreak"}, "data.root_cause"),
        ({"approved_by": "lee"}, "data.approved_by"),  # not a field of the task
    ],
)
def test_task_data_that_does_not_fit_its_fields_is_refused(
    data: dict[str, Any], field: str
) -> None:
    case, template = _open()
    _work(case, template, "triage", "accept")
    task = _open_task(case, "investigate")
    case_logic.claim(case, ClaimTask(task_id=task.id, actor=AGENT), NOW)
    before = case.model_copy(deep=True)
    cmd = CompleteTask(task_id=task.id, actor=AGENT, outcome="valid", data=data)
    with pytest.raises(CaseRuleError) as refused:
        case_logic.check_complete(case, cmd)
    assert refused.value.kind == "invalid"
    assert [e["field"] for e in refused.value.details["fields"]] == [field]
    assert refused.value.message.startswith(f"{field}: ")
    assert case == before


def test_data_that_fits_is_taken() -> None:
    case, template = _open()
    _work(case, template, "triage", "accept")
    data = {"credit_amount": "12.5", "invoice_id": "INV-B", "root_cause": "price list"}
    _work(case, template, "investigate", "valid", data=data)
    assert case.data["finding"] == data


def test_a_billing_error_task_takes_its_steps_fields() -> None:
    case, template = _refused_then_retried({"credit_amount": "500.00"})
    assert _may_call(case, template)
    case_logic.action_refused(case, template, REFUSED, NOW)
    task = _open_task(case, "issue_credit")
    assert task.fields == {"credit_amount": "amount", "invoice_id": "invoice"}
    case_logic.claim(case, ClaimTask(task_id=task.id, actor=AGENT), NOW)
    cmd = CompleteTask(
        task_id=task.id, actor=AGENT, outcome="retry", data={"invoice_id": "INV-1/payments?"}
    )
    with pytest.raises(CaseRuleError, match=r"data\.invoice_id"):
        case_logic.check_complete(case, cmd)


# -- validation -----------------------------------------------------------------------------


def _step_index(document: dict[str, Any], step_id: str) -> int:
    return next(i for i, s in enumerate(document["steps"]) if s["id"] == step_id)


def _errors(document: dict[str, Any]) -> dict[str, str]:
    """The errors a new draft of `document` gets (what `POST /sops/{name}/versions` lists)."""
    with pytest.raises(InvalidTemplateError) as invalid:
        validated(document)
    return {e.path: e.message for e in invalid.value.errors}


@pytest.mark.parametrize(
    ("sop", "step"), [("dispute", "issue_credit"), ("credit_review", "update_limit")]
)
def test_a_new_version_must_say_who_approves_money(sop: str, step: str) -> None:
    document = shipped_document(sop)
    i = _step_index(document, step)
    del document["steps"][i]["approval"]
    errors = _errors(document)
    assert list(errors) == [f"steps[{i}].approval"]
    assert "moves money" in errors[f"steps[{i}].approval"]
    parse_template(document)  # a version published before the rule still parses


def test_an_approval_rule_is_checked_part_by_part() -> None:
    document = shipped_document("dispute")
    i = _step_index(document, "issue_credit")
    document["steps"][i]["approval"] = {
        "amount": "credit",
        "above": "params.limit",
        "step": "triage",
    }
    errors = _errors(document)
    assert set(errors) == {
        f"steps[{i}].approval.amount",
        f"steps[{i}].approval.above",
        f"steps[{i}].approval.step",
    }
    assert "not one of this step's args" in errors[f"steps[{i}].approval.amount"]
    assert "approval: true" in errors[f"steps[{i}].approval.step"]


def test_an_approval_step_needs_an_approve_outcome() -> None:
    document = shipped_document("dispute")
    lead = document["steps"][_step_index(document, "lead_approval")]
    lead["outcomes"], lead["transitions"] = (
        ["yes", "reject"],
        {
            "yes": "issue_credit",
            "reject": "notify_rejected",
        },
    )
    i = _step_index(document, "issue_credit")
    assert list(_errors(document)) == [f"steps[{i}].approval.step"]


def test_fields_have_a_closed_set_of_types() -> None:
    document = shipped_document("dispute")
    i = _step_index(document, "investigate")
    document["steps"][i]["fields"]["credit_amount"] = "money"
    errors = _errors(document)
    assert list(errors) == [f"steps[{i}].fields.credit_amount"]


def test_shipped_versions_carry_their_rules() -> None:
    for sop, step, amount in [
        ("dispute", "issue_credit", "amount"),
        ("credit_review", "update_limit", "credit_limit"),
    ]:
        template = parse_template(shipped_document(sop), require_approval_rules=True)
        billing = template.step(step)
        assert isinstance(billing, BillingStep) and billing.approval is not None
        assert billing.approval.amount == amount and billing.approval.step == "lead_approval"
    assert Decimal(str(template.parameters["approval_threshold"])) == Decimal("50000")


@pytest.mark.parametrize(
    ("kind", "value", "fits"),
    [
        ("date", "2026-12-01", True),
        ("date", "2026-02-30", False),
        ("date", "20261201", False),  # fromisoformat takes it; the contract says YYYY-MM-DD
        ("date", "2026-12-01T10:00", False),
        ("id", "PO-2026.11_7", True),
        ("id", "../etc", False),
        ("id", "a" * 65, False),
        ("amount", "0.5", True),
        ("amount", "1.23456", False),
        ("text", "short note", True),
        ("text", 42, False),
        ("invoice", "INV-A", True),
        ("invoice", "inv-a", False),
    ],
)
def test_each_field_type_takes_only_its_values(kind: str, value: Any, fits: bool) -> None:
    errors = field_errors({"f": kind}, {"f": value}, INVOICES)
    assert (errors == []) is fits, errors
    if not fits:
        assert errors[0]["field"] == "data.f"


@pytest.mark.parametrize(
    ("value", "amount"),
    [
        ("250000", Decimal("250000")),
        (1000, Decimal("1000")),
        (Decimal("1E+3"), Decimal("1000")),  # a computed amount, written out in full
        ("0.00", Decimal("0")),  # a credit limit may be set to nothing
        (True, None),
        (1.5, None),  # floats are not money
        ("-1", None),
        ("\u0661", None),  # a non-ASCII digit
        (None, None),
    ],
)
def test_what_counts_as_an_amount_sent_to_billing(value: Any, amount: Decimal | None) -> None:
    if amount is None:
        with pytest.raises(ValueError, match="is not a decimal amount"):
            money_rules.money(value)
    else:
        assert money_rules.money(value) == amount


@pytest.mark.parametrize("value", ["NaN", "Infinity", None, True, "ten"])
def test_a_threshold_must_be_a_number(value: Any) -> None:
    with pytest.raises(ValueError, match="is not a number"):
        money_rules.threshold(value)
