"""Escalation notices: a one-line Subject on the wire and the true lateness at every level,
received by a real SMTP server on loopback (the escalation on Temporal's time-skipping
server)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from activities.email import EmailActivities, EmailRequest
from domain.escalation_models import EscalationInput, EscalationKind, EscalationStatus
from escalations.matrix import shipped_matrix
from settings import Settings
from store.db import session_scope
from store.tables import UserRow
from tests.harness import dispute_input, terminate_cases
from tests.smtp_sink import SmtpSink
from workflows.case_workflow import CaseWorkflow
from workflows.escalation_logic import add_note, notice_context, open_escalation
from workflows.worker import build_worker

SENDER = "casebook@o2c.test"
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _escalation_input(kind: EscalationKind, breached_at: datetime | None) -> EscalationInput:
    return EscalationInput(
        escalation_id="DSP-1.e1",
        case_id="DSP-1",
        case_type="dispute",
        task_id="DSP-1.t1",
        step="triage",
        kind=kind,
        reason="SLA of step triage breached",
        region="24x7",
        vendor=None,
        opened_by="casebook",
        route=shipped_matrix().route("disputes-tier1", "24x7", None),
        breached_at=breached_at,
    )


def test_a_notice_says_how_late_the_work_is_now_and_which_level_let_it_run_out() -> None:
    inp = _escalation_input(EscalationKind.SLA_BREACH, NOON)
    esc = open_escalation(inp, NOON)
    at_breach = notice_context(esc, inp, NOON)
    assert at_breach["late_by"] == "" and at_breach["level_missed"] == ""  # never "0s"
    esc.level, esc.level_name, esc.queue = 1, "manager", "o2c-managers"
    later = notice_context(esc, inp, NOON + timedelta(hours=4, minutes=2))
    assert later["late_by"] == "4h 2m"
    assert later["level_missed"] == "lead (disputes-leads) did not act within 4h"


def test_a_manual_escalation_is_not_late_but_says_who_did_not_act() -> None:
    inp = _escalation_input(EscalationKind.MANUAL, None)
    esc = open_escalation(inp, NOON)
    esc.level = 1
    context = notice_context(esc, inp, NOON + timedelta(hours=5))
    assert context["late_by"] == "" and "lead (disputes-leads)" in context["level_missed"]


def _raw_subject(sink: SmtpSink) -> list[bytes]:
    """The Subject header's lines as they came over the wire."""
    envelope = sink.collector.envelopes[-1]
    content = envelope.original_content or envelope.content
    assert isinstance(content, bytes)
    lines = content.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"Subject:"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return lines[start:end]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(
    "step",
    [
        "investigate",  # a subject that fits on a line of its own, not beside `Subject: `
        "investigate_the_short_shipment with the carrier and the warehouse team in Lyon",
    ],
)
async def test_the_subject_arrives_on_one_line_as_rendered(
    sink: SmtpSink, sqlite_engine: Engine, step: str
) -> None:
    settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port, mail_from=SENDER)
    context = {
        "case_id": "DSP-0A1B2C3D4E5F6A7B",
        "escalation_id": "DSP-0A1B2C3D4E5F6A7B.e1",
        "step": step,
        "task_id": "DSP-0A1B2C3D4E5F6A7B.t1",
        "queue": "disputes-leads",
        "level_name": "lead",
        "reason": "SLA breached",
        "opened_by": "casebook",
        "late_by": "",
        "link": "http://casebook.test/cases/DSP-0A1B2C3D4E5F6A7B",
    }
    request = EmailRequest(
        idempotency_key=f"notice-{uuid.uuid4().hex}",
        template="escalation_opened",
        context=context,
        to=["lead@o2c.test"],
    )
    await EmailActivities(sqlite_engine, settings).send_email(request)
    subject = f"[Casebook] Escalation to lead: case DSP-0A1B2C3D4E5F6A7B ({step})"
    raw = _raw_subject(sink)
    # The first line carries the subject's first words, never nothing.
    assert raw[0].startswith(b"Subject: [Casebook] Escalation"), raw
    assert all(len(line) <= 78 for line in raw), raw
    [message] = sink.messages()
    assert message["Subject"] == subject


async def _received(sink: SmtpSink, count: int) -> list[EmailMessage]:
    for _ in range(200):
        if len(sink.collector.envelopes) >= count:
            break
        await asyncio.sleep(0.05)
    return [
        message_from_bytes(e.original_content or e.content, policy=policy.default)  # type: ignore[misc]
        for e in sink.collector.envelopes
    ]


@pytest.mark.asyncio(loop_scope="session")
async def test_the_managers_notice_says_how_late_the_task_is_after_the_lead_ran_out(
    time_skipping: WorkflowEnvironment, sqlite_engine: Engine, sink: SmtpSink
) -> None:
    with session_scope(sqlite_engine) as session:
        for name, queue in (("lena", "disputes-leads"), ("max", "o2c-managers")):
            session.add(
                UserRow(
                    name=name,
                    role="lead",
                    email=f"{name}@o2c.test",
                    queues=[queue],
                    token_hash=f"h-{name}-{uuid.uuid4().hex}",
                    created_at=datetime.now(UTC),
                )
            )
    settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port, mail_from=SENDER)
    task_queue = f"notices-{uuid.uuid4().hex[:8]}"
    inp = dispute_input("100.00", region="24x7")
    async with build_worker(time_skipping.client, task_queue, sqlite_engine, settings):
        handle = await time_skipping.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=task_queue
        )
        try:
            # Triage's 4h runs out; then the lead's own 4h on the escalation.
            await time_skipping.sleep(timedelta(hours=4, seconds=1))
            await _received(sink, 1)
            await time_skipping.sleep(timedelta(hours=4, minutes=30))
            lead, manager = (await _received(sink, 2))[:2]
        finally:
            await terminate_cases(time_skipping.client, [handle.id])
    assert lead["To"] == "lena@o2c.test" and manager["To"] == "max@o2c.test"
    lead_text = lead.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Late by" not in lead_text and not str(lead["Subject"]).endswith(" late")
    assert str(manager["Subject"]).endswith(", 4h late"), manager["Subject"]
    text = manager.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Late by:     4h" in text, text
    assert "Raised:      lead (disputes-leads) did not act within 4h" in text


def test_a_note_on_a_resolved_escalation_is_declined() -> None:
    inp = _escalation_input(EscalationKind.MANUAL, None)
    esc = open_escalation(inp, NOON)
    assert add_note(esc, "ana", "again", NOON) and esc.joined == 1
    esc.status = EscalationStatus.RESOLVED
    assert not add_note(esc, "ana", "and again", NOON) and esc.joined == 1
