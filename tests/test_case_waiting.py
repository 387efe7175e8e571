"""What a case waits on, and outages on a case: the pure functions, no server."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from api.schemas import TaskOut
from domain.case_models import (
    Actor,
    CaseInput,
    CaseSnapshot,
    ClaimTask,
    CompleteTask,
    PauseTask,
    ResumeTask,
    Role,
)
from tests.harness import case_input, dispute_input, opened_dispute
from workflows import case_core, case_logic, case_outages, case_sla
from workflows.case_waiting import waiting_on

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ANA = Actor(name="ana", role=Role.AGENT, queues=["disputes-tier1", "collections-tier1"])
KEY = "CASE-1:issue_credit:1"


def _claimed_dispute() -> tuple[CaseInput, CaseSnapshot, str]:
    inp = dispute_input("100.00", region="24x7")  # wall time: 4h budget is 4 hours
    case = opened_dispute(inp, NOW)
    task = case.tasks[0]
    case_logic.claim(case, ClaimTask(task_id=task.id, actor=ANA), NOW)
    return inp, case, task.id


def test_an_open_task_shows_its_deadline_and_business_time_left() -> None:
    _, case, task_id = _claimed_dispute()
    [waiting] = waiting_on(case, NOW + timedelta(hours=1)).tasks
    assert waiting.task_id == task_id and waiting.assignee == "ana"
    assert waiting.due == NOW + timedelta(hours=4)
    assert waiting.time_left_seconds == 3 * 3600
    assert not waiting.paused


def test_a_paused_task_keeps_its_time_left_frozen_and_the_reason_is_on_the_history() -> None:
    _, case, task_id = _claimed_dispute()
    paused_at = NOW + timedelta(hours=1)
    case_sla.pause(
        case, PauseTask(task_id=task_id, actor=ANA, reason="awaiting_customer"), paused_at
    )
    task = case.tasks[0]
    assert task.sla_due is None and task.sla_left_seconds == 3 * 3600
    assert TaskOut.of(task).sla_left_seconds == 3 * 3600  # what an inbox shows
    # Days later, still paused: the time left has not moved.
    [waiting] = waiting_on(case, NOW + timedelta(days=3)).tasks
    assert waiting.paused and waiting.due is None and waiting.time_left_seconds == 3 * 3600
    assert waiting.pause_reason == "awaiting_customer"
    [event] = [h for h in case.history if h.event == "sla_paused"]
    assert event.detail["reason"] == "awaiting_customer"
    assert event.detail["time_left_seconds"] == 3 * 3600

    case_sla.resume(case, ResumeTask(task_id=task_id, actor=ANA), NOW + timedelta(hours=5))
    assert case.tasks[0].sla_left_seconds is None
    assert case.tasks[0].sla_due == NOW + timedelta(hours=8)


def _collection_at_contact() -> tuple[CaseInput, CaseSnapshot]:
    inp = case_input("collection", "900.00")
    case = case_logic.open_case(inp, NOW)
    case_logic.action_done(case, inp.template, {"overdue_amount": "900.00"}, NOW)
    if case.current_step == "log_overdue_notice":  # collection v2 records the notice in billing
        case_logic.action_done(case, inp.template, {"notice": "overdue_notice"}, NOW)
    case_logic.email_queued(case, inp.template, [], NOW)  # the overdue notice
    [task] = case.tasks
    case_logic.claim(case, ClaimTask(task_id=task.id, actor=ANA), NOW)
    return inp, case


def test_a_wait_step_shows_its_instant() -> None:
    inp, case = _collection_at_contact()
    task = case.tasks[0]
    done = CompleteTask(task_id=task.id, actor=ANA, outcome="no_contact")
    case_logic.complete(case, inp.template, done, NOW)
    at = NOW + timedelta(days=1)
    [timer] = waiting_on(case, at, inp.template).timers
    assert timer.step == "wait_before_reminder" and timer.kind == "after"
    assert timer.until == NOW + timedelta(days=7)
    assert timer.seconds_left == 6 * 24 * 3600
    assert timer.title == inp.template.step("wait_before_reminder").title
    assert waiting_on(case, at, inp.template).tasks == []


def test_a_promise_to_pay_shows_the_promised_date_plus_grace() -> None:
    inp, case = _collection_at_contact()
    task = case.tasks[0]
    promise = {"date": "2026-03-10", "amount": "900.00"}
    done = CompleteTask(task_id=task.id, actor=ANA, outcome="promise_to_pay", data=promise)
    case_logic.complete(case, inp.template, done, NOW)
    case_logic.action_done(case, inp.template, {}, NOW)  # billing recorded the promise
    [timer] = waiting_on(case, NOW, inp.template).timers
    assert timer.step == "wait_for_promise" and timer.kind == "until"
    # The start of 10 March on the French calendar, plus 2 days of grace.
    assert timer.until == datetime(2026, 3, 11, 23, 0, tzinfo=UTC)
    assert timer.until.date() > date(2026, 3, 10)


def test_an_outage_shows_attempts_and_last_error_and_is_on_the_history_at_begin_and_end() -> None:
    _, case, _ = _claimed_dispute()
    before = case.revision
    retry = NOW + timedelta(seconds=8)
    case_outages.round_failed(
        case, "billing", "issue_credit", KEY, "BillingUnavailableError: HTTP 503", NOW, retry
    )
    later = NOW + timedelta(minutes=1)
    case_outages.round_failed(
        case, "billing", "issue_credit", KEY, "BillingUnavailableError: refused", later, later
    )
    [outage] = waiting_on(case, later).outages
    assert outage.system == "billing" and outage.step == "issue_credit"
    assert outage.attempts == 2 * case_outages.ROUND_ATTEMPTS
    assert outage.last_error == "BillingUnavailableError: refused" and outage.began_at == NOW
    assert case.revision == before + 2  # each round shows, only the first is on the history
    [began] = [h for h in case.history if h.event == "outage_began"]
    assert began.detail["attempts"] == case_outages.ROUND_ATTEMPTS
    assert began.detail["last_error"] == "BillingUnavailableError: HTTP 503"

    case_outages.call_went_through(case, KEY, NOW + timedelta(minutes=2))
    assert case.outages == [] and waiting_on(case, NOW).outages == []
    [ended] = [h for h in case.history if h.event == "outage_ended"]
    assert ended.detail["attempts"] == 6 and ended.detail["lasted_seconds"] == 120
    assert ended.detail["last_error"] == "BillingUnavailableError: refused"
    revision = case.revision
    case_outages.call_went_through(case, KEY, NOW)  # a call with no outage: nothing to say
    assert case.revision == revision


def test_the_backoff_between_rounds_doubles_up_to_its_cap() -> None:
    waits = [case_outages.backoff(n) for n in (3, 6, 9, 300)]
    assert waits == [
        timedelta(seconds=8),
        timedelta(seconds=64),
        case_outages.MAX_BACKOFF,
        case_outages.MAX_BACKOFF,
    ]


def test_open_escalations_are_waited_on_and_resolved_ones_are_not() -> None:
    _, case, task_id = _claimed_dispute()
    task = case.task(task_id)
    first = case_core.add_escalation(case, task, "manual", "customer angry", "ana", NOW, 0)
    second = case_core.add_escalation(case, task, "manual", "again", "ana", NOW, 0)
    second.status = "resolved"
    escalations = waiting_on(case, NOW).escalations
    assert [e.escalation_id for e in escalations] == [first.id]
    assert escalations[0].reason == "customer angry" and escalations[0].status == "open"


def test_a_closed_case_waits_on_no_task_or_timer() -> None:
    inp, case = _collection_at_contact()
    task = case.tasks[0]
    case_logic.complete(
        case, inp.template, CompleteTask(task_id=task.id, actor=ANA, outcome="dispute"), NOW
    )
    assert case.status == "closed"
    waiting = waiting_on(case, NOW, inp.template)
    assert waiting.tasks == [] and waiting.timers == [] and waiting.action is None


def test_without_its_calendar_a_running_clock_has_no_time_left_but_keeps_its_due() -> None:
    # As the API counts a case read from the read model: the pinned facts live in the worker.
    _, case, _ = _claimed_dispute()
    task = case.tasks[0]
    assert task.sla is not None
    task.sla = task.sla.model_copy(update={"calendar_digest": "never-pinned-here"})
    [waiting] = waiting_on(case, NOW).tasks
    assert waiting.time_left_seconds is None and waiting.due == NOW + timedelta(hours=4)
