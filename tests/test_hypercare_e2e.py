"""A case opened in its SOP version's hypercare window, end to end on Temporal's
time-skipping server with a real SMTP server on loopback: the window on its history, its
task warning earlier, and its breach emailed to the SOP owner as well as to the leads."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from domain.case_models import CaseSnapshot, HypercareWindow, SlaState
from settings import Settings
from tests.harness import case_input, terminate_cases
from tests.smtp_sink import SmtpSink
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

OWNER = "olga@o2c.test"


async def _mail_to(sink: SmtpSink, address: str) -> list[EmailMessage]:
    """What reached `address`, once something did (or after about ten seconds)."""
    for _ in range(200):
        mine = [m for m in sink.messages() if m["To"] == address]
        if mine:
            return mine
        await asyncio.sleep(0.05)
    return []


@pytest.mark.asyncio(loop_scope="session")
async def test_a_case_in_hypercare_warns_earlier_and_its_breach_reaches_the_sop_owner(
    time_skipping: WorkflowEnvironment, sqlite_engine: Engine, sink: SmtpSink
) -> None:
    published = datetime.now(UTC) - timedelta(hours=1)  # the server's clock starts near ours
    window = HypercareWindow(
        sop_name="dispute",
        sop_version=2,
        since=published,
        until=published + timedelta(days=14),
        warn_factor=0.5,
        owner="olga",
        owner_email=OWNER,
    )
    # Dispute v2 opens triage at once (v3 first calls billing); 24x7: business = wall time.
    inp = case_input("dispute", "100.00", region="24x7", version=2)
    inp = inp.model_copy(update={"hypercare": window})
    settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port, mail_from="cb@o2c.test")
    task_queue = f"hypercare-{uuid.uuid4().hex[:8]}"
    async with build_worker(time_skipping.client, task_queue, sqlite_engine, settings):
        handle = await time_skipping.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=task_queue
        )
        try:
            opened = await handle.query(CaseWorkflow.snapshot)
            triage = opened.tasks[0]
            # Triage's 4h SLA warns at 80% as a rule (3h12m); in hypercare after half that.
            warned_at = triage.created_at + timedelta(hours=1, minutes=36)
            assert triage.sla_warning_at == warned_at
            await time_skipping.sleep(timedelta(hours=1, minutes=40))
            warned = await handle.query(CaseWorkflow.snapshot)
            await time_skipping.sleep(timedelta(hours=2, minutes=30))  # past the 4h breach
            owners_mail = await _mail_to(sink, OWNER)
            breached = await handle.query(CaseWorkflow.snapshot)
        finally:
            await terminate_cases(time_skipping.client, [handle.id])
    [entry] = [e for e in opened.history if e.event == "hypercare"]
    assert entry.detail["until"] == window.until.isoformat()
    assert entry.detail["warn_factor"] == 0.5 and entry.detail["owner"] == "olga"
    assert warned.tasks[0].sla_state == SlaState.WARNING
    [warning] = [e.at for e in warned.history if e.event == "sla_warning"]
    assert warned_at <= warning < warned_at + timedelta(seconds=1)  # the timer's own delay
    assert _events(breached).count("sla_breached") == 1
    [notice] = owners_mail
    assert notice["Subject"] == (
        f"[Casebook] Hypercare breach: dispute v2, case {inp.case_id} (triage)"
    )
    text = notice.get_content()
    assert f"in hypercare until {window.until.isoformat()}" in text
    assert f"Escalation:  {inp.case_id}.e1" in text


def _events(case: CaseSnapshot) -> list[str]:
    return [e.event for e in case.history]
