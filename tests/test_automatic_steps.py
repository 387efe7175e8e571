"""Email and billing steps: the case waits on them, keeps their results, hands refusals to
a person; an SOP's own email goes out once, through a real SMTP server."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from domain.case_models import CaseInput, CaseSnapshot, ClaimTask, CompleteTask, SopRef
from settings import Settings
from sop_templates.registry import SHIPPED_DIR, content_hash, load_document
from sop_templates.schema import SopTemplate
from sop_templates.validation import parse_template
from tests.harness import AGENT, LEAD, dispute_input, terminate_cases
from tests.smtp_sink import SmtpSink
from workflows import case_logic
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)


def _credit_review() -> SopTemplate:
    return parse_template(load_document(SHIPPED_DIR / "credit_review.v1.yaml"))


def _input(template: SopTemplate, data: dict[str, Any] | None = None) -> CaseInput:
    base = dispute_input("60000.00", region="24x7")
    return base.model_copy(
        update={
            "case_type": template.case_type,
            "reason_code": "periodic",
            "template": template,
            "data": data or {"contact": "ap@customer.test"},
            "sop": SopRef(
                name=template.name,
                version=template.version,
                content_hash=content_hash(template.model_dump(mode="json")),
            ),
        }
    )


def test_a_billing_step_waits_keeps_its_result_and_moves_on() -> None:
    template = _credit_review()
    case = case_logic.open_case(_input(template), NOW)
    assert case.pending_action is not None and case.tasks == []
    assert case.pending_action.idempotency_key == f"{case.id}:gather_exposure:1"
    exposure = _exposure(overdue_amount="0.00")
    case_logic.action_done(case, template, exposure, NOW)
    assert case.data["exposure"] == exposure and case.pending_action is None
    assert [t.step for t in case.tasks] == ["review"]


def _exposure(**changes: Any) -> dict[str, Any]:
    """What billing's exposure answer looks like (billing/contract.py `Exposure`)."""
    return {
        "customer_id": "C1",
        "credit_limit": "25000.00",
        "open_amount": "1200.00",
        "overdue_amount": "0.00",
        "max_days_past_due": 0,
        "paid_invoices": 4,
        "paid_late": 0,
        "average_days_late": "0.0",
        **changes,
    }


@pytest.mark.parametrize(
    ("behaviour", "score", "proposed"),
    [
        ({}, "100.0", "60000.00"),  # a good payer gets the limit asked for (the case amount)
        (
            {"max_days_past_due": 12, "paid_late": 2, "average_days_late": "9.5"},
            "58.5",
            "25000.00",
        ),  # a late payer keeps its current limit
    ],
)
def test_the_templates_scoring_rule_proposes_a_limit(
    behaviour: dict[str, Any], score: Any, proposed: str
) -> None:
    template = _credit_review()
    case = case_logic.open_case(_input(template), NOW)
    case_logic.action_done(case, template, _exposure(**behaviour), NOW)
    assert case.data["rating"]["score"] == score
    assert case.data["scoring"]["proposed_limit"] == proposed
    assert [h.event for h in case.history].count("computed") == 2


def test_a_refusal_becomes_a_task_and_a_retry_gets_a_new_key() -> None:
    template = _credit_review()
    case = case_logic.open_case(_input(template), NOW)
    error = {"code": "unknown_customer", "message": "no customer C1", "status": 404}
    task = case_logic.action_refused(case, template, error, NOW)
    assert task.queue == "credit-tier1" and task.allowed_outcomes == ["retry", "skip"]
    assert task.data == {"billing_error": error}
    lead = LEAD
    case_logic.claim(case, ClaimTask(task_id=task.id, actor=lead), NOW)
    case_logic.complete(
        case, template, CompleteTask(task_id=task.id, actor=lead, outcome="retry"), NOW
    )
    assert case.pending_action is not None
    assert case.pending_action.idempotency_key == f"{case.id}:gather_exposure:2"


def test_a_decision_reads_what_billing_returned_and_what_a_person_proposed() -> None:
    template = _credit_review()
    case = case_logic.open_case(_input(template), NOW)
    case_logic.action_done(case, template, _exposure(overdue_amount="350.00"), NOW)
    review = case.tasks[0]
    case_logic.claim(
        case,
        ClaimTask(task_id=review.id, actor=AGENT.model_copy(update={"queues": ["credit-tier1"]})),
        NOW,
    )
    case_logic.complete(
        case,
        template,
        CompleteTask(
            task_id=review.id,
            actor=AGENT.model_copy(update={"queues": ["credit-tier1"]}),
            outcome="propose",
            data={"credit_limit": "20000"},
        ),
        NOW,
    )
    # Below the threshold, but something is overdue: a lead must approve.
    assert case.current_step == "lead_approval" and case.data["proposal"]["credit_limit"] == "20000"


@pytest.mark.asyncio(loop_scope="session")
async def test_the_sops_own_email_goes_to_the_customer_once(
    time_skipping: WorkflowEnvironment, sqlite_engine: Engine, sink: SmtpSink
) -> None:
    template = parse_template(load_document(SHIPPED_DIR / "dispute.v1.yaml"))
    inp = _input(template).model_copy(
        update={
            "case_type": "dispute",
            "reason_code": "pricing",
            "amount": dispute_input("75.50").amount,
        }
    )
    settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port, mail_from="ar@o2c.test")
    queue = f"auto-{uuid.uuid4().hex[:8]}"
    async with build_worker(time_skipping.client, queue, sqlite_engine, settings):
        handle = await time_skipping.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=queue
        )
        try:
            # The triage task opens at once: the email goes beside the case, not before it.
            case: CaseSnapshot = await handle.query(CaseWorkflow.snapshot)
            assert [t.step for t in case.tasks] == ["triage"]
            queued = [h for h in case.history if h.event == "email_queued"]
            assert queued and queued[0].detail["to"] == ["ap@customer.test"]
            for _ in range(100):  # sent beside the case, through the outbox
                if sink.messages():
                    break
                await asyncio.sleep(0.05)
            [mail] = sink.messages()
            assert mail["Subject"] == f"We received your dispute {inp.case_id}"
            assert "75.50 EUR on\r\nINV-1 (pricing)" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        finally:
            await terminate_cases(time_skipping.client, [inp.case_id])


def _collection() -> SopTemplate:
    return parse_template(load_document(SHIPPED_DIR / "collection.v1.yaml"))


def _work(case: CaseSnapshot, template: SopTemplate, outcome: str, data: dict[str, Any]) -> None:
    task = next(t for t in case.tasks if t.status != "done")
    agent = AGENT.model_copy(update={"queues": [task.queue]})
    case_logic.claim(case, ClaimTask(task_id=task.id, actor=agent), NOW)
    case_logic.complete(
        case, template, CompleteTask(task_id=task.id, actor=agent, outcome=outcome, data=data), NOW
    )


def test_a_broken_promise_reopens_more_urgent_contact() -> None:
    template = _collection()
    case = case_logic.open_case(_input(template).model_copy(update={"region": "SG"}), NOW)
    case_logic.action_done(case, template, {"overdue_amount": "500.00"}, NOW)  # exposure
    assert case.pending_action is not None and case.pending_action.step == "overdue_notice"
    case_logic.action_done(case, template, {"to": ["ap@customer.test"]}, NOW)
    _work(case, template, "promise_to_pay", {"date": "2026-12-01", "amount": "500.00"})
    assert case.pending_action is not None and case.pending_action.step == "record_promise"
    case_logic.action_done(case, template, {"id": "PTP-1"}, NOW)  # recorded in billing
    # Start of 1 Dec in Singapore, plus two days' grace.
    assert case.waiting_until == datetime(2026, 12, 2, 16, tzinfo=UTC)
    case_logic.wait_over(case, template, case.waiting_until)
    assert case.pending_action is not None and case.pending_action.step == "verify_promise"
    case_logic.action_done(case, template, {"overdue_amount": "500.00"}, NOW)  # not paid
    case_logic.action_done(case, template, {"to": ["ap@customer.test"]}, NOW)  # reminder
    again = [t for t in case.tasks if t.status != "done"]
    assert [(t.step, t.priority) for t in again] == [("contact_after_broken_promise", 80)]


def test_a_kept_promise_closes_the_case() -> None:
    template = _collection()
    case = case_logic.open_case(_input(template), NOW)
    case_logic.action_done(case, template, {"overdue_amount": "500.00"}, NOW)
    case_logic.action_done(case, template, {}, NOW)
    _work(case, template, "promise_to_pay", {"date": "2026-12-01T12:00:00+00:00"})
    case_logic.action_done(case, template, {"id": "PTP-1"}, NOW)  # recorded in billing
    assert case.waiting_until == datetime(2026, 12, 3, 12, tzinfo=UTC)
    case_logic.wait_over(case, template, case.waiting_until)
    case_logic.action_done(case, template, {"overdue_amount": "0"}, NOW)
    assert case.status == "closed" and case.resolution == "paid"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_wait_step_is_a_temporal_timer(
    time_skipping: WorkflowEnvironment, sqlite_engine: Engine
) -> None:
    document = copy.deepcopy(load_document(SHIPPED_DIR / "dispute.v1.yaml"))
    document["steps"].insert(
        0, {"id": "cooling_off", "kind": "wait", "after": "3d", "next": "acknowledge"}
    )
    document["start"] = "cooling_off"
    inp = _input(parse_template(document)).model_copy(
        update={"case_type": "dispute", "reason_code": "pricing"}
    )
    queue = f"wait-{uuid.uuid4().hex[:8]}"
    async with build_worker(time_skipping.client, queue, sqlite_engine):
        handle = await time_skipping.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=queue
        )
        try:
            first: CaseSnapshot = await handle.query(CaseWorkflow.snapshot)
            assert first.tasks == [] and first.waiting_until is not None
            await time_skipping.sleep(timedelta(days=2, hours=23))
            assert (await handle.query(CaseWorkflow.snapshot)).tasks == []
            await time_skipping.sleep(timedelta(hours=2))
            later: CaseSnapshot = await handle.query(CaseWorkflow.snapshot)
            for _ in range(150):  # the timer fired; the workflow task after it may lag
                if later.tasks:
                    break
                await asyncio.sleep(0.1)
                later = await handle.query(CaseWorkflow.snapshot)
            assert [t.step for t in later.tasks] == ["triage"]
        finally:
            await terminate_cases(time_skipping.client, [inp.case_id])
