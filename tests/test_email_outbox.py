"""The email activity against a real SMTP server on loopback: sent once, whatever happens."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import aiosmtplib
    import pytest
    from sqlalchemy import Engine
    from sqlmodel import select
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from activities.email import (
        SEND_EMAIL,
        EmailActivities,
        EmailRequest,
        EmailResult,
        message_id,
    )
    from settings import Settings
    from store.db import session_scope
    from store.tables import OutboxRow, UserRow
    from tests.smtp_sink import SmtpSink

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUEUE = "disputes-tier2"
PUBLIC_URL = "https://casebook.example.test"
SENDER = "casebook@example.test"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink()
    yield server
    server.stop()


@pytest.fixture
def activities(sqlite_engine: Engine, sink: SmtpSink) -> EmailActivities:
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=sink.port, mail_from=SENDER, public_url=PUBLIC_URL
    )
    return EmailActivities(sqlite_engine, settings)


def _add_user(engine: Engine, name: str, role: str, email: str | None) -> None:
    with session_scope(engine) as session:
        session.add(
            UserRow(
                name=name,
                role=role,
                email=email,
                queues=[QUEUE],
                token_hash=f"hash-{name}",
                created_at=datetime.now(UTC),
            )
        )


def _request(key: str | None = None, **overrides: Any) -> EmailRequest:
    case_id = "DSP-0001"
    context = {
        "case_id": case_id,
        "escalation_id": "ESC-1",
        "step": "investigate",
        "task_id": "T-7",
        "queue": QUEUE,
        "level_name": "lead",
        "reason": "SLA breached on investigate",
        "late_by": "2h 15m",
        "link": f"{PUBLIC_URL}/cases/{case_id}",
        "opened_by": "system",
    }
    fields: dict[str, Any] = {
        "idempotency_key": key or f"escalation-opened:{uuid.uuid4().hex}:level-1",
        "case_id": case_id,
        "template": "escalation_opened",
        "context": context,
        "to": ["ops@example.test"],
        "to_queue": QUEUE,
    }
    return EmailRequest(**(fields | overrides))


def _outbox(engine: Engine, key: str) -> OutboxRow:
    with session_scope(engine) as session:
        return session.exec(select(OutboxRow).where(OutboxRow.idempotency_key == key)).one()


async def test_sends_to_explicit_recipients_and_the_queues_leads_with_an_email(
    activities: EmailActivities, sink: SmtpSink, sqlite_engine: Engine
) -> None:
    _add_user(sqlite_engine, "lee", "lead", "lee@example.test")
    _add_user(sqlite_engine, "lou", "lead", None)
    _add_user(sqlite_engine, "ana", "agent", "ana@example.test")
    sink.start()
    req = _request()

    result = await activities.send_email(req)

    recipients = ["ops@example.test", "lee@example.test"]
    assert result == EmailResult(
        idempotency_key=req.idempotency_key, status="sent", recipients=recipients
    )
    [envelope] = sink.collector.envelopes
    assert envelope.mail_from == SENDER and envelope.rcpt_tos == recipients
    [message] = sink.messages()
    assert "DSP-0001" in message["Subject"] and "2h 15m" in message["Subject"]
    assert message["Message-ID"] == message_id(req.idempotency_key, SENDER)
    for part in ("plain", "html"):
        body = message.get_body((part,))
        assert body is not None
        text = body.get_content()
        for expected in ("DSP-0001", "investigate", "2h 15m", f"{PUBLIC_URL}/cases/DSP-0001"):
            assert expected in text
    row = _outbox(sqlite_engine, req.idempotency_key)
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None


async def test_a_retry_with_the_same_key_sends_nothing_more(
    activities: EmailActivities, sink: SmtpSink, sqlite_engine: Engine
) -> None:
    sink.start()
    req = _request()
    await activities.send_email(req)

    again = await activities.send_email(req)

    assert again.status == "already_sent" and again.recipients == ["ops@example.test"]
    assert len(sink.collector.envelopes) == 1
    assert _outbox(sqlite_engine, req.idempotency_key).attempts == 1


async def test_an_smtp_outage_delays_the_email_but_never_loses_it(
    activities: EmailActivities, sink: SmtpSink, sqlite_engine: Engine
) -> None:
    req = _request()

    with pytest.raises(aiosmtplib.SMTPConnectError):
        await activities.send_email(req)

    row = _outbox(sqlite_engine, req.idempotency_key)
    assert row.status == "pending" and row.attempts == 1 and row.last_error
    sink.start()
    result = await activities.send_email(req)
    assert result.status == "sent" and len(sink.collector.envelopes) == 1
    row = _outbox(sqlite_engine, req.idempotency_key)
    assert row.status == "sent" and row.attempts == 2


async def test_no_recipients_is_recorded_as_done_without_touching_smtp(
    activities: EmailActivities, sqlite_engine: Engine
) -> None:
    # The SMTP server is not running: reaching it would raise.
    req = _request(to=[], to_queue="nobody-serves-this-queue")

    result = await activities.send_email(req)

    assert result.status == "no_recipients" and result.recipients == []
    row = _outbox(sqlite_engine, req.idempotency_key)
    assert row.status == "sent" and row.recipients == []
    assert (await activities.send_email(req)).status == "no_recipients"


@workflow.defn
class SendOnceWorkflow:
    """Just enough workflow to let Temporal drive the activity's retries."""

    @workflow.run
    async def run(self, req: EmailRequest) -> EmailResult:
        return await workflow.execute_activity(
            SEND_EMAIL,
            req,
            result_type=EmailResult,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5),
        )


def _crashing_after_first_send(real: EmailActivities) -> Any:
    """`send_email` that dies after SMTP accepted, before Temporal hears of it (attempt 1)."""

    @activity.defn(name=SEND_EMAIL)
    async def send_email(req: EmailRequest) -> EmailResult:
        result = await real.send_email(req)
        if activity.info().attempt == 1:
            raise RuntimeError("worker lost after the email went out")
        return result

    return send_email


async def test_temporal_retry_after_a_crash_past_smtp_sends_exactly_once(
    time_skipping: WorkflowEnvironment, activities: EmailActivities, sink: SmtpSink
) -> None:
    sink.start()
    task_queue = f"email-{uuid.uuid4().hex[:8]}"
    req = _request()
    async with Worker(
        time_skipping.client,
        task_queue=task_queue,
        workflows=[SendOnceWorkflow],
        activities=[_crashing_after_first_send(activities)],
    ):
        result = await time_skipping.client.execute_workflow(
            SendOnceWorkflow.run,
            req,
            id=f"wf-{task_queue}",
            task_queue=task_queue,
            result_type=EmailResult,
        )

    assert result.status == "already_sent"
    assert len(sink.collector.envelopes) == 1
