"""Record a dispute through an SMTP outage and a billing outage (patch `outage-visible`):
rounds of attempts, backoff timers and the outage news, so later interpreter changes keep
replaying a case that lived through outages.

Run `.venv/bin/python tests/histories/record_outages.py`; it writes
`dispute_outages.json` beside it (time-skipping server, the built-in billing service over
HTTP, an SMTP server on loopback started late).
"""

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.harness import case_input
from tests.histories.stack import TASK_QUEUE, recording_stack, work
from tests.smtp_sink import SmtpSink
from workflows.case_workflow import CaseWorkflow

OUT = Path(__file__).parent
CASE_ID = "DSP-RECORDED-OUTAGES"


async def _until(handle, event: str) -> None:
    for _ in range(300):
        case = await handle.query(CaseWorkflow.snapshot)
        if any(h.event == event for h in case.history):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{event} never happened")


async def main() -> None:
    mail = SmtpSink()  # down at first
    async with recording_stack(mail) as (env, ledger):
        inp = case_input("dispute", "250.00", case_id=CASE_ID, data={"contact": "ap@c1.test"})
        h = await env.client.start_workflow(
            CaseWorkflow.run, inp, id=CASE_ID, task_queue=TASK_QUEUE
        )
        await env.sleep(timedelta(seconds=10))  # the acknowledgement's first round fails
        await _until(h, "outage_began")
        mail.start()
        await env.sleep(timedelta(seconds=10))
        await _until(h, "outage_ended")
        await work(h, f"{CASE_ID}.t1", "accept")
        ledger.stop()
        await work(h, f"{CASE_ID}.t2", "valid")
        await env.sleep(timedelta(seconds=10))  # the credit memo's first round fails
        ledger.start()
        await env.sleep(timedelta(seconds=10))
        await h.result()
        (OUT / "dispute_outages.json").write_text((await h.fetch_history()).to_json())


if __name__ == "__main__":
    asyncio.run(main())
