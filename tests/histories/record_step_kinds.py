"""Record a history for every step kind and every patch of the case workflow, as it is now.

Run `.venv/bin/python tests/histories/record_step_kinds.py`: it writes the `kinds_*.json`
histories (the other recorders keep theirs as they were) on the time-skipping server, with
the built-in billing service over HTTP and a real SMTP server on loopback. The replay test
then guards each of these paths against an interpreter change that forgets its patch:

- `kinds_collection_ladder`: billing, decision, email, human_task (paused, resumed and
  reassigned by a lead), wait (`after`), the credit hold, end (patches `email-in-background`,
  `money-controls`, `project-after-commit`, `sop-errors-become-work`, `archive-on-close`).
- `kinds_collection_promise`: a `wait` `until` a promised date, billing sees the payment.
- `kinds_credit_review`: `compute` steps and a billing update of the credit limit.
- `kinds_sop_error_goto`: a decision reading missing data opens an error task; `goto`.
- `kinds_email_refused`: an email that cannot render opens a task (`email-failure-task`);
  `retry`, then `skip`.
- `kinds_calendar_applied`: `apply_calendars` moves an open task's deadline.
"""

import asyncio
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain.case_models import (
    Actor,
    ApplyCalendars,
    CaseInput,
    CaseSnapshot,
    ClaimTask,
    CommandResult,
    CompleteTask,
    PauseTask,
    ReassignTask,
    ResumeTask,
    Role,
    SopRef,
)
from escalations.calendars import facts_for
from settings import Settings
from sop_templates.registry import content_hash
from sop_templates.schema import SopTemplate
from store.db import make_engine, migrate
from tests.billing_harness import BillingService
from tests.conftest import start_time_skipping
from tests.harness import AGENT, LEAD, case_input, shipped_document
from tests.smtp_sink import SmtpSink
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

OUT = Path(__file__).parent
TODAY = date.today()
ADMIN = Actor(name="ada", role=Role.ADMIN)
CONTACT = "ap@customer.test"
Handle = WorkflowHandle[Any, Any]


async def until(handle: Handle, accept: Callable[[CaseSnapshot], Any]) -> CaseSnapshot:
    case = None
    for _ in range(400):
        case = await handle.query(CaseWorkflow.snapshot)
        if accept(case):
            return case
        await asyncio.sleep(0.05)
    raise AssertionError(f"the case never got there: {case and case.current_step}")


async def update(handle: Handle, name: str, command: Any) -> None:
    try:
        await handle.execute_update(name, command, result_type=CommandResult)
    except Exception as exc:
        raise AssertionError(f"{name} refused: {exc.__cause__}") from exc


async def open_task(handle: Handle, step: str) -> tuple[str, str]:
    case = await until(
        handle, lambda c: any(t.step == step and t.status == "open" for t in c.tasks)
    )
    task = next(t for t in case.tasks if t.step == step and t.status == "open")
    return task.id, task.queue


async def work(
    handle: Handle,
    step: str,
    outcome: str,
    actor: Actor = AGENT,
    data: dict[str, Any] | None = None,
) -> None:
    task_id, queue = await open_task(handle, step)
    actor = actor.model_copy(update={"queues": [queue]})
    await update(handle, "claim_task", ClaimTask(task_id=task_id, actor=actor))
    done = CompleteTask(task_id=task_id, actor=actor, outcome=outcome, data=data or {})
    await update(handle, "complete_task", done)


async def save(handle: Handle, name: str) -> None:
    await asyncio.wait_for(handle.result(), timeout=30)
    (OUT / f"{name}.json").write_text((await handle.fetch_history()).to_json())


def customer(ledger: BillingService, amount: str, days_past_due: int) -> tuple[str, str]:
    customer_id = f"K-REC-{uuid.uuid4().hex[:6].upper()}"
    ledger.put_customer(customer_id, limit="20000.00")
    due = TODAY - timedelta(days=days_past_due)
    ledger.put_invoice(f"{customer_id}-0", customer_id, amount, due, due - timedelta(days=30))
    return customer_id, f"{customer_id}-0"


def collection(ledger: BillingService, amount: str, days_past_due: int, name: str) -> CaseInput:
    customer_id, invoice = customer(ledger, amount, days_past_due)
    return case_input(
        "collection",
        amount,
        customer_id=customer_id,
        invoice_ids=[invoice],
        region="24x7",
        data={"contact": CONTACT},
        case_id=f"COL-REC-{name}",
    )


async def collection_ladder(env: WorkflowEnvironment, start: Any, ledger: BillingService) -> None:
    handle = await start(collection(ledger, "500.00", 20, "LADDER"))
    task_id, queue = await open_task(handle, "contact_customer")
    agent = AGENT.model_copy(update={"queues": [queue]})
    await update(handle, "claim_task", ClaimTask(task_id=task_id, actor=agent))
    await update(handle, "pause_task", PauseTask(task_id=task_id, actor=agent, reason="on leave"))
    await update(handle, "resume_task", ResumeTask(task_id=task_id, actor=agent))
    lead = LEAD.model_copy(update={"queues": [queue]})
    await update(handle, "reassign_task", ReassignTask(task_id=task_id, actor=lead, to_queue=queue))
    await work(handle, "contact_customer", "no_contact")
    await until(handle, lambda c: c.waiting_until is not None)
    await env.sleep(timedelta(days=7, minutes=1))
    await until(handle, lambda c: c.current_step == "wait_before_final_demand")
    await env.sleep(timedelta(days=14, minutes=1))
    await work(handle, "hand_off", "handed_off", actor=LEAD)
    await save(handle, "kinds_collection_ladder")


async def collection_promise(env: WorkflowEnvironment, start: Any, ledger: BillingService) -> None:
    inp = collection(ledger, "750.00", 5, "PROMISE")
    handle = await start(inp)
    promised = (TODAY + timedelta(days=3)).isoformat()
    await work(handle, "contact_customer", "promise_to_pay", data={"date": promised})
    ledger.pay(inp.invoice_ids[0], "750.00", key=f"bank-{inp.customer_id}")
    watching = await until(handle, lambda c: c.waiting_until is not None)
    assert watching.waiting_until is not None
    now = await env.get_current_time()
    await env.sleep(watching.waiting_until - now + timedelta(seconds=1))
    await save(handle, "kinds_collection_promise")


async def credit_review(start: Any, ledger: BillingService) -> None:
    customer_id, _ = customer(ledger, "3000.00", -10)
    inp = case_input(
        "credit_review",
        "20000.00",
        customer_id=customer_id,
        reason_code="new_customer",
        data={"contact": CONTACT},
        case_id="CRR-REC-COMPUTE",
    )
    handle = await start(inp)
    await work(handle, "review", "propose", data={"credit_limit": "35000.00"})
    await save(handle, "kinds_credit_review")


async def sop_error_goto(start: Any) -> None:
    document = shipped_document("dispute")
    route = next(s for s in document["steps"] if s["id"] == "approval_route")
    route["branches"][0]["when"] = "case.data.finding.risk_score > 1"
    inp = case_input("dispute", "100.00", region="24x7", case_id="DSP-REC-SOP-ERROR")
    handle = await start(inp.model_copy(update={"template": SopTemplate.model_validate(document)}))
    await work(handle, "triage", "accept")
    await work(handle, "investigate", "valid")
    await until(handle, lambda c: c.stalled is not None)
    await work(handle, "approval_route", "goto", LEAD, data={"goto": "notify_rejected"})
    await save(handle, "kinds_sop_error_goto")


async def email_refused(start: Any) -> None:
    template = SopTemplate.model_validate(
        {
            "name": "dispute",
            "version": 7,
            "case_type": "dispute",
            "start": "tell",
            "emails": {"notice": {"subject": "Case {{ case.id }}", "text": "{{ case.data.x }}"}},
            "steps": [
                {
                    "id": "tell",
                    "kind": "email",
                    "template": "notice",
                    "to": "case.data.contact",
                    "next": "done",
                },
                {"id": "done", "kind": "end", "resolution": "told"},
            ],
        }
    )
    sop = SopRef(name="dispute", version=7, content_hash=content_hash(template.model_dump()))
    inp = case_input("dispute", "75.50", data={"contact": CONTACT}, case_id="DSP-REC-EMAIL")
    handle = await start(inp.model_copy(update={"template": template, "sop": sop}))
    await work(handle, "tell", "retry", LEAD)
    await until(handle, lambda c: sum(t.step == "tell" for t in c.tasks) == 2)
    await work(handle, "tell", "skip", LEAD)
    await save(handle, "kinds_email_refused")


async def calendar_applied(start: Any) -> None:
    inp = case_input("dispute", "90.00", region="FR", case_id="DSP-REC-CALENDAR")
    handle = await start(inp)
    await open_task(handle, "triage")
    case = await until(handle, lambda c: c.tasks and c.tasks[0].sla_due is not None)
    [facts] = facts_for(["FR"], TODAY)
    due = case.tasks[0].sla_due
    assert due is not None
    closure = due.astimezone(ZoneInfo(facts.timezone)).date()  # the day the SLA falls due
    closed = facts.model_copy(update={"days_off": tuple(sorted({*facts.days_off, closure}))})
    await handle.execute_update(
        "apply_calendars", ApplyCalendars(actor=ADMIN, calendars=[closed]), result_type=list[str]
    )
    await work(handle, "triage", "not_a_dispute")
    await save(handle, "kinds_calendar_applied")


async def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    ledger = BillingService(f"sqlite:///{tmp / 'billing.db'}")
    ledger.start()
    mail = SmtpSink()
    mail.start()
    engine = make_engine(f"sqlite:///{tmp / 'rec.db'}")
    migrate(engine)
    settings = Settings(
        billing_url=ledger.url, smtp_host="127.0.0.1", smtp_port=mail.port, mail_from="ar@o2c"
    )
    recordings = [
        lambda env, start: credit_review(start, ledger),
        lambda env, start: sop_error_goto(start),
        lambda env, start: email_refused(start),
        lambda env, start: calendar_applied(start),
        lambda env, start: collection_promise(env, start, ledger),
        lambda env, start: collection_ladder(env, start, ledger),
    ]
    try:
        for record in recordings:
            # A server each: a closed case's archive child keeps a shared one from skipping.
            env = await start_time_skipping()
            try:
                async with build_worker(env.client, "rec", engine, settings):

                    async def start(inp: CaseInput, env: WorkflowEnvironment = env) -> Handle:
                        # Calendars pinned as intake pins them (POST /cases).
                        pinned = facts_for(inp.template.calendars(inp.region), TODAY)
                        inp = inp.model_copy(update={"calendars": pinned})
                        return await env.client.start_workflow(
                            CaseWorkflow.run, inp, id=inp.case_id, task_queue="rec"
                        )

                    await record(env, start)
            finally:
                await env.shutdown()
    finally:
        mail.stop()
        ledger.stop()


asyncio.run(main())
