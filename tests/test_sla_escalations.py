"""SLAs in business time and escalations, on Temporal's time-skipping test server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from domain.case_models import CaseSnapshot, ClaimTask, PauseTask, ReassignTask, ResumeTask
from domain.escalation_models import EscalationSnapshot, LeadAction
from escalations.calendars import get_calendar
from settings import Settings
from store.db import session_scope
from store.tables import OutboxRow, UserRow
from tests.harness import AGENT, LEAD, command, dispute_input, terminate_cases
from tests.smtp_sink import SmtpSink
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")
SG = ZoneInfo("Asia/Singapore")
T = TypeVar("T")


@pytest_asyncio.fixture(loop_scope="session")
async def queue(
    time_skipping: WorkflowEnvironment, sqlite_engine: Engine, sink: SmtpSink
) -> AsyncIterator[str]:
    with session_scope(sqlite_engine) as session:
        for name, queues in (("lena", ["disputes-leads"]), ("max", ["o2c-managers"])):
            session.add(
                UserRow(
                    name=name,
                    role="lead",
                    email=f"{name}@o2c.test",
                    queues=queues,
                    token_hash=f"h-{name}",
                    created_at=datetime.now(UTC),
                )
            )
    settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port, mail_from="cb@o2c.test")
    task_queue = f"sla-{uuid.uuid4().hex[:8]}"
    async with build_worker(time_skipping.client, task_queue, sqlite_engine, settings):
        yield task_queue
        await terminate_cases(time_skipping.client, STARTED.pop(task_queue, []))


STARTED: dict[str, list[str]] = {}


async def _start(env: WorkflowEnvironment, queue: str, region: str) -> WorkflowHandle[Any, Any]:
    """A dispute at its triage task (dispute v3 first marks its invoice disputed in billing)."""
    inp = dispute_input("100.00", region=region)
    STARTED.setdefault(queue, []).append(inp.case_id)
    handle = await env.client.start_workflow(
        CaseWorkflow.run, inp, id=inp.case_id, task_queue=queue
    )
    await _until(lambda: _case(handle), lambda c: bool(c.tasks))
    return handle


async def _case(handle: WorkflowHandle[Any, Any]) -> CaseSnapshot:
    return await handle.query(CaseWorkflow.snapshot)


async def _until(probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool]) -> T:
    """Workflow tasks triggered by a skipped timer may still be finishing: poll briefly."""
    for _ in range(100):
        value = await probe()
        if accept(value):
            return value
        await asyncio.sleep(0.05)
    return value


async def _sleep_until(env: WorkflowEnvironment, instant: datetime) -> None:
    await env.sleep(instant - await env.get_current_time())


def _next_working_friday(after: datetime) -> datetime:
    """A Friday 16:00 in Singapore whose Friday and next Monday are both working days."""
    cal = get_calendar("SG")
    day = after.astimezone(SG).date() + timedelta(days=1)
    while not (
        day.weekday() == 4
        and cal.is_working_date(day)
        and cal.is_working_date(day + timedelta(days=3))
    ):
        day += timedelta(days=1)
    return datetime.combine(day, time(16), SG)


async def test_breach_is_counted_in_business_time_friday_to_monday(
    time_skipping: WorkflowEnvironment, queue: str, sink: SmtpSink
) -> None:
    friday = _next_working_friday(await time_skipping.get_current_time())
    await _sleep_until(time_skipping, friday)
    handle = await _start(time_skipping, queue, "SG")
    task = (await _case(handle)).tasks[0]
    monday = friday + timedelta(days=3)
    # The task opens when the worker gets to it: on a loaded machine, a few real (and so
    # server) seconds after 16:00. Its business clock starts then, so the deadline moves
    # by as much.
    late = task.created_at - friday
    assert timedelta(0) <= late < timedelta(minutes=1)
    # 16:00-18:00 on Friday, then 09:00-11:00 on Monday: four working hours.
    assert _near(task.sla_due, monday.replace(hour=11) + late)
    assert _near(task.sla_warning_at, monday.replace(hour=10, minute=12) + late)  # 80% of 4h

    await _sleep_until(time_skipping, friday + timedelta(hours=5))  # 4h of wall time are gone
    late_friday = await _case(handle)
    assert late_friday.tasks[0].sla_state == "on_time" and late_friday.escalations == []

    await _sleep_until(time_skipping, monday.replace(hour=10, minute=30))
    warned = await _until(lambda: _case(handle), lambda c: c.tasks[0].sla_state == "warning")
    assert warned.tasks[0].sla_state == "warning" and warned.tasks[0].priority == 70
    assert warned.escalations == []

    await _sleep_until(time_skipping, monday.replace(hour=11, second=1) + late)
    breached = await _until(lambda: _case(handle), lambda c: bool(c.escalations))
    assert breached.tasks[0].sla_state == "breached"
    [link] = breached.escalations
    assert link.kind == "sla_breach" and link.queue == "disputes-tier1"
    esc = await _escalation(time_skipping, link.id)
    assert (esc.level_name, esc.queue) == ("lead", "disputes-leads")
    events = [h.event for h in breached.history]
    assert events.index("sla_warning") < events.index("sla_breached")
    await _until(lambda: _async(sink.messages), lambda ms: len(ms) == 1)
    [mail] = sink.messages()
    assert mail["To"] == "lena@o2c.test"
    assert handle.id in mail["Subject"] + mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def _near(actual: datetime | None, expected: datetime) -> bool:
    """Equal within a second: the server's clock lands a few ms after the instant slept to."""
    return actual is not None and abs(actual - expected) < timedelta(seconds=1)


async def _async(fn: Callable[[], T]) -> T:
    return fn()


async def _escalation(env: WorkflowEnvironment, escalation_id: str) -> EscalationSnapshot:
    """The escalation's own workflow: the case records the link in the Update or timer's
    workflow task and starts the child in its next round, so it may not exist yet."""
    handle = env.client.get_workflow_handle(escalation_id)

    async def snapshot() -> EscalationSnapshot | None:
        try:
            return await handle.query("snapshot", result_type=EscalationSnapshot)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return None

    found = await _until(snapshot, lambda e: e is not None)
    assert found is not None, f"escalation {escalation_id} never started"
    return found


async def test_pause_and_resume_move_the_deadline(
    time_skipping: WorkflowEnvironment, queue: str
) -> None:
    handle = await _start(time_skipping, queue, "24x7")
    task = (await _case(handle)).tasks[0]
    assert task.sla_due == task.created_at + timedelta(hours=4)  # 24x7 is wall time
    await command(handle, "claim_task", ClaimTask(task_id=task.id, actor=AGENT))
    await time_skipping.sleep(timedelta(hours=1))
    paused = await command(
        handle,
        "pause_task",
        PauseTask(task_id=task.id, actor=AGENT, reason="awaiting_customer"),
    )
    assert paused.tasks[0].sla_paused and paused.tasks[0].sla_due is None
    await time_skipping.sleep(timedelta(hours=5))  # past the original deadline, but paused
    assert (await _case(handle)).escalations == []
    resumed = await command(handle, "resume_task", ResumeTask(task_id=task.id, actor=AGENT))
    assert _near(resumed.tasks[0].sla_due, task.sla_due + timedelta(hours=5))

    now = await time_skipping.get_current_time()
    await command(
        handle,
        "pause_task",
        PauseTask(
            task_id=task.id,
            actor=AGENT,
            reason="awaiting_customer",
            until=now + timedelta(minutes=30),
        ),
    )
    await time_skipping.sleep(timedelta(minutes=31))
    auto = await _until(lambda: _case(handle), lambda c: not c.tasks[0].sla_paused)
    assert not auto.tasks[0].sla_paused
    assert _near(auto.tasks[0].sla_due, task.sla_due + timedelta(hours=5, minutes=30))
    assert [h.event for h in auto.history].count("sla_resumed") == 2


async def test_lead_breach_goes_to_manager_and_reassign_restarts_the_sla(
    time_skipping: WorkflowEnvironment, queue: str, sink: SmtpSink
) -> None:
    handle = await _start(time_skipping, queue, "24x7")
    await time_skipping.sleep(timedelta(hours=4, seconds=1))
    case = await _until(lambda: _case(handle), lambda c: bool(c.escalations))
    esc_id = case.escalations[0].id
    first = await _escalation(time_skipping, esc_id)
    assert first.queue == "disputes-leads" and first.due_at is not None

    await _sleep_until(time_skipping, first.due_at + timedelta(seconds=1))  # the lead is late
    raised = await _until(lambda: _escalation(time_skipping, esc_id), lambda e: e.level == 1)
    assert (raised.level_name, raised.queue) == ("manager", "o2c-managers")
    mails = await _until(lambda: _async(sink.messages), lambda ms: len(ms) == 2)
    assert [m["To"] for m in mails] == ["lena@o2c.test", "max@o2c.test"]

    task = case.tasks[0]
    now = await time_skipping.get_current_time()
    moved = await command(
        handle,
        "reassign_task",
        ReassignTask(task_id=task.id, actor=LEAD, to_user="ana", to_actor=AGENT),
    )
    fresh = moved.tasks[0]
    assert fresh.status == "claimed" and fresh.assignee == "ana"
    assert fresh.sla_state == "on_time"
    assert now <= fresh.sla_due - timedelta(hours=4) <= now + timedelta(seconds=5)  # type: ignore[operator]
    history = [
        h.event
        for h in (
            await _until(
                lambda: _case(handle), lambda c: "escalation_raised" in [h.event for h in c.history]
            )
        ).history
    ]
    assert {"sla_breached", "escalation_opened", "escalation_raised", "task_reassigned"} <= set(
        history
    )


async def test_an_smtp_outage_never_blocks_the_escalation(
    time_skipping: WorkflowEnvironment, sqlite_engine: Engine
) -> None:
    down = SmtpSink()  # not started: the mail server is out
    with session_scope(sqlite_engine) as session:
        session.add(
            UserRow(
                name="lena",
                role="lead",
                email="lena@o2c.test",
                queues=["disputes-leads"],
                token_hash="h",
                created_at=datetime.now(UTC),
            )
        )
    settings = Settings(smtp_host="127.0.0.1", smtp_port=down.port)
    task_queue = f"sla-{uuid.uuid4().hex[:8]}"
    async with build_worker(time_skipping.client, task_queue, sqlite_engine, settings):
        handle = await _start(time_skipping, task_queue, "24x7")
        await time_skipping.sleep(timedelta(hours=4, seconds=1))
        case = await _until(lambda: _case(handle), lambda c: bool(c.escalations))
        esc_handle = time_skipping.client.get_workflow_handle(case.escalations[0].id)

        def outbox() -> list[OutboxRow]:
            # The lead's notice (the dispute's acknowledgement has no recipient here).
            with Session(sqlite_engine) as session:
                rows = session.exec(select(OutboxRow)).all()
                return [r for r in rows if r.recipients == ["lena@o2c.test"]]

        pending = await _until(
            lambda: _async(outbox), lambda rows: bool(rows) and rows[0].attempts > 0
        )
        assert pending[0].status == "pending" and pending[0].last_error
        resolved = await esc_handle.execute_update(
            "act",
            LeadAction(action="resolve", actor=LEAD, note="called the agent"),
            result_type=EscalationSnapshot,
        )
        assert resolved.status == "resolved"  # the lead acted while the mail was down

        down.start()  # the mail server is back: the retried email goes out, once
        try:
            await time_skipping.sleep(timedelta(minutes=15))
            sent = await _until(lambda: _async(down.messages), lambda ms: len(ms) == 1)
            assert len(sent) == 1 and sent[0]["To"] == "lena@o2c.test"
            assert (await _until(lambda: _async(outbox), lambda r: r[0].status == "sent"))[
                0
            ].status == "sent"
        finally:
            down.stop()
            await terminate_cases(time_skipping.client, STARTED.pop(task_queue, []))
