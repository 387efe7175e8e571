"""Record a dispute opened in its SOP version's hypercare window (patch `hypercare`): the
window on its history, its triage warning after half the usual time, its breach escalated
with the SOP owner to notify.

Run `.venv/bin/python tests/histories/record_hypercare.py`; it writes
`dispute_hypercare.json` beside it (time-skipping server, an SMTP server on loopback).
"""

import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domain.case_models import CaseSnapshot, HypercareWindow
from settings import Settings
from store.db import make_engine, migrate
from tests.conftest import start_time_skipping
from tests.harness import case_input, terminate_cases
from tests.smtp_sink import SmtpSink
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

OUT = Path(__file__).parent
CASE_ID = "DSP-RECORDED-HYPERCARE"


async def main() -> None:
    env = await start_time_skipping()
    sink = SmtpSink()
    sink.start()
    engine = make_engine(f"sqlite:///{tempfile.mkdtemp()}/rec-hypercare.db")
    migrate(engine)
    published = datetime.now(UTC) - timedelta(hours=1)
    window = HypercareWindow(
        sop_name="dispute",
        sop_version=2,
        since=published,
        until=published + timedelta(days=14),
        warn_factor=0.5,
        owner="olga",
        owner_email="olga@o2c.test",
    )
    inp = case_input("dispute", "100.00", region="24x7", version=2, case_id=CASE_ID)
    inp = inp.model_copy(update={"hypercare": window})
    settings = Settings(smtp_host="127.0.0.1", smtp_port=sink.port)
    async with build_worker(env.client, "rec", engine, settings):
        h = await env.client.start_workflow(CaseWorkflow.run, inp, id=CASE_ID, task_queue="rec")
        await env.sleep(timedelta(hours=4, minutes=5))  # the warning, then the breach
        for _ in range(100):  # the owner's notice, sent by the escalation
            if any(m["To"] == window.owner_email for m in sink.messages()):
                break
            await asyncio.sleep(0.1)
        case = await h.query(CaseWorkflow.snapshot, result_type=CaseSnapshot)
        events = [e.event for e in case.history]
        assert {"hypercare", "sla_warning", "sla_breached"} <= set(events), events
        (OUT / "dispute_hypercare.json").write_text((await h.fetch_history()).to_json())
        await terminate_cases(env.client, [CASE_ID])
    sink.stop()
    await env.shutdown()


asyncio.run(main())
