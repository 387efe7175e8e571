"""Each case type end to end: time-skipping Temporal, the built-in billing service over HTTP,
and a real SMTP server on loopback. What we look at is what a finance team would: the
emails that arrived and the ledger after."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from audit.replay import replay_case
from billing.contract import CreditMemo
from billing.http_adapter import HttpBillingSystem
from billing.service.tables import CreditMemoRow
from domain.case_models import Actor, CaseInput, CaseSnapshot, ClaimTask, CompleteTask
from settings import Settings
from tests.billing_harness import BillingService
from tests.conftest import start_time_skipping
from tests.harness import AGENT, LEAD, case_input, command, terminate_cases
from tests.smtp_sink import SmtpSink
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")
TODAY = date.today()  # the billing service ages invoices on the real calendar
CONTACT = "ap@customer.test"


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BillingService]:
    with BillingService(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'billing.db'}") as billing:
        yield billing


def _customer(ledger: BillingService, *invoices: tuple[str, int]) -> tuple[str, list[str]]:
    """A fresh customer with invoices (amount, days past due; negative: not yet due)."""
    customer = f"K-{uuid.uuid4().hex[:6]}"
    ledger.put_customer(customer, limit="20000.00")
    ids = []
    for n, (amount, past_due) in enumerate(invoices):
        invoice = f"{customer}-{n}"
        due = TODAY - timedelta(days=past_due)
        ledger.put_invoice(invoice, customer, amount, due, due - timedelta(days=30))
        ids.append(invoice)
    return customer, ids


class Flow:
    """Drives one case as people would: claim and complete each task as it opens."""

    def __init__(self, env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any]) -> None:
        self.env, self.handle = env, handle

    async def case(self) -> CaseSnapshot:
        return await self.handle.query(CaseWorkflow.snapshot)

    async def until(
        self, accept: Callable[[CaseSnapshot], bool], what: str, seconds: float = 15
    ) -> CaseSnapshot:
        for _ in range(int(seconds / 0.05)):
            case = await self.case()
            if accept(case):
                return case
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what} never happened; the case: {case.current_step} {case.history}")

    async def work(
        self, step: str, outcome: str, actor: Actor = AGENT, data: dict[str, Any] | None = None
    ) -> None:
        case = await self.until(
            lambda c: any(t.step == step and t.status == "open" for t in c.tasks), f"task {step}"
        )
        task = next(t for t in case.tasks if t.step == step and t.status == "open")
        actor = actor.model_copy(update={"queues": [task.queue]})
        await command(self.handle, "claim_task", ClaimTask(task_id=task.id, actor=actor))
        await command(
            self.handle,
            "complete_task",
            CompleteTask(task_id=task.id, actor=actor, outcome=outcome, data=data or {}),
        )

    async def closed(self, seconds: float = 15) -> CaseSnapshot:
        """The case once closed; its workflow then ends, and its history replays."""
        case = await self.until(lambda c: c.status == "closed", "the close", seconds)
        await asyncio.wait_for(self.handle.result(), timeout=seconds)
        verdict = await replay_case(await self.handle.fetch_history())
        assert verdict.deterministic, verdict
        return case


@pytest_asyncio.fixture(loop_scope="session")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test: these cases close and sleep for days, and a closed
    case's archive child left behind stops a shared server from skipping (tests/conftest)."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def run(
    time_skipping: WorkflowEnvironment, sqlite_engine: Engine, ledger: BillingService
) -> AsyncIterator[Callable[..., Any]]:
    """Start cases on a worker wired to this module's ledger and a test's SMTP sink."""
    started: list[str] = []
    workers: list[Any] = []

    async def start(inp: CaseInput, sink: SmtpSink, billing: Any = None) -> Flow:
        settings = Settings(
            smtp_host="127.0.0.1", smtp_port=sink.port, billing_url=ledger.url, mail_from="ar@o2c"
        )
        queue = f"e2e-{uuid.uuid4().hex[:8]}"
        worker = build_worker(time_skipping.client, queue, sqlite_engine, settings, billing)
        await worker.__aenter__()
        workers.append(worker)
        started.append(inp.case_id)
        handle = await time_skipping.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=queue
        )
        return Flow(time_skipping, handle)

    yield start
    await terminate_cases(time_skipping.client, started)
    for worker in workers:
        await worker.__aexit__(None, None, None)


def _memos(ledger: BillingService, invoice_id: str) -> int:
    with Session(ledger.engine) as session:
        query = select(func.count()).where(CreditMemoRow.invoice_id == invoice_id)
        return int(session.scalar(query) or 0)


async def _mail(sink: SmtpSink, count: int) -> list[str]:
    for _ in range(200):
        if len(sink.messages()) >= count:
            break
        await asyncio.sleep(0.05)
    return [str(m["Subject"]) for m in sink.messages()]


async def test_a_dispute_credits_part_of_an_invoice_after_a_leads_approval(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, [invoice] = _customer(ledger, ("2000.00", 10))
    inp = case_input(
        "dispute",
        "1500.00",
        customer_id=customer,
        invoice_ids=[invoice],
        data={"contact": CONTACT},
    )
    flow = await run(inp, sink)
    await flow.work("triage", "accept")
    await flow.work("investigate", "valid", data={"credit_amount": "1200.00"})
    await flow.work("lead_approval", "approve", actor=LEAD)
    case = await flow.closed()

    assert case.resolution == "credited"
    assert case.data["credit_memo"]["amount"] == "1200.00"
    assert ledger.open_balance(invoice) == Decimal("800.00") and _memos(ledger, invoice) == 1
    subjects = await _mail(sink, 2)
    assert subjects == [
        f"We received your dispute {inp.case_id}",
        f"Your dispute {inp.case_id}: credit memo issued",
    ]
    assert all(m["To"] == CONTACT for m in sink.messages())
    body = sink.messages()[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert case.data["credit_memo"]["id"] in body and "1200.00" in body


async def test_a_credit_review_updates_the_limit_in_billing_and_tells_the_customer(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, _ = _customer(ledger, ("3000.00", -10))  # open, nothing overdue
    inp = case_input(
        "credit_review",
        "20000.00",
        customer_id=customer,
        reason_code="new_customer",
        data={"contact": CONTACT},
    )
    flow = await run(inp, sink)
    await flow.work("review", "propose", data={"credit_limit": "35000.00"})
    case = await flow.closed()

    assert case.resolution == "limit_updated"
    assert case.data["exposure"]["open_amount"] == "3000.00"
    assert ledger.get(f"/customers/{customer}")["credit_limit"] == "35000.00"  # type: ignore[index]
    assert await _mail(sink, 1) == [f"Your credit limit with us ({customer})"]
    assert "35000.00" in sink.messages()[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_a_collection_ends_in_a_credit_hold_and_a_hand_off(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, invoices = _customer(ledger, ("500.00", 20))
    inp = case_input(
        "collection",
        "500.00",
        customer_id=customer,
        invoice_ids=invoices,
        region="24x7",
        data={"contact": CONTACT},
    )
    flow = await run(inp, sink)
    await flow.work("contact_customer", "no_contact")
    await flow.until(lambda c: c.waiting_until is not None, "the reminder wait")
    await flow.env.sleep(timedelta(days=7, minutes=1))  # the ladder's week without an answer
    await flow.until(lambda c: c.current_step == "wait_before_final_demand", "the reminder")
    assert ledger.get(f"/customers/{customer}")["on_hold"] is False  # type: ignore[index]
    await flow.env.sleep(timedelta(days=14, minutes=1))
    await flow.until(lambda c: c.current_step == "hand_off", "the hand-off")

    assert ledger.get(f"/customers/{customer}")["on_hold"] is True  # type: ignore[index]
    assert await _mail(sink, 3) == [
        f"Overdue invoices on your account ({customer})",
        f"Reminder: overdue invoices ({customer})",
        f"Final demand before credit hold ({customer})",
    ]
    await flow.work("hand_off", "handed_off", actor=LEAD)
    assert (await flow.closed()).resolution == "handed_off"


async def test_a_kept_promise_to_pay_closes_the_collection_on_its_own(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, invoices = _customer(ledger, ("750.00", 5))
    inp = case_input(
        "collection",
        "750.00",
        customer_id=customer,
        invoice_ids=invoices,
        region="24x7",
        data={"contact": CONTACT},
    )
    flow = await run(inp, sink)
    promised = (TODAY + timedelta(days=3)).isoformat()
    await flow.work("contact_customer", "promise_to_pay", data={"date": promised, "amount": "750"})
    ledger.pay(invoices[0], "750.00", key=f"bank-{customer}")  # the customer pays
    watching = await flow.until(lambda c: c.waiting_until is not None, "the promise watch")
    assert watching.waiting_until is not None
    # To the promised date plus grace, no further: once the case closes, its archive child
    # keeps the test server from skipping time (see tests/conftest.py).
    now = await flow.env.get_current_time()
    await flow.env.sleep(watching.waiting_until - now + timedelta(seconds=1))
    case = await flow.closed()
    assert case.resolution == "paid" and case.data["exposure"]["overdue_amount"] == "0.00"
    assert ledger.get(f"/customers/{customer}")["on_hold"] is False  # type: ignore[index]


async def test_a_payment_plan_is_recorded_in_billing(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, invoices = _customer(ledger, ("600.00", 15))
    inp = case_input(
        "collection",
        "600.00",
        customer_id=customer,
        invoice_ids=invoices,
        region="24x7",
        data={"contact": CONTACT},
    )
    flow = await run(inp, sink)
    months = [(TODAY + timedelta(days=30 * n)).isoformat() for n in (1, 2)]
    plan = [{"due_on": day, "amount": "300.00"} for day in months]
    await flow.work("contact_customer", "payment_plan", data={"installments": plan})
    case = await flow.closed()
    assert case.resolution == "payment_plan"
    recorded = next(
        h for h in case.history if h.event == "billing_done" and h.step == "record_plan"
    )
    assert recorded.detail["id"].startswith("PP-")
    assert [i["amount"] for i in recorded.detail["installments"]] == ["300.00", "300.00"]


class CrashAfterBilling(HttpBillingSystem):
    """The worker dies right after billing applied the credit memo, before Temporal hears."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls = 0

    async def issue_credit_memo(
        self,
        invoice_id: str,
        amount: Decimal,
        reason: str,
        idempotency_key: str,
        *,
        customer_id: str,
        currency: str,
    ) -> CreditMemo:
        self.calls += 1
        memo = await super().issue_credit_memo(
            invoice_id,
            amount,
            reason,
            idempotency_key,
            customer_id=customer_id,
            currency=currency,
        )
        if self.calls == 1:
            raise ConnectionResetError("worker lost after billing answered")
        return memo


async def test_a_retried_credit_memo_call_issues_one_credit_memo(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, [invoice] = _customer(ledger, ("900.00", 3))
    inp = case_input("dispute", "300.00", customer_id=customer, invoice_ids=[invoice])
    crashing = CrashAfterBilling(ledger.url)
    flow = await run(inp, sink, crashing)
    await flow.work("triage", "accept")
    await flow.work("investigate", "valid")
    case = await flow.closed()
    assert crashing.calls == 2  # the call was retried...
    assert _memos(ledger, invoice) == 1  # ...and billing applied it once
    assert ledger.open_balance(invoice) == Decimal("600.00")
    assert case.data["credit_memo"]["amount"] == "300.00"


async def test_a_billing_refusal_becomes_a_task_a_person_corrects(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, [invoice] = _customer(ledger, ("100.00", 3))
    inp = case_input("dispute", "400.00", customer_id=customer, invoice_ids=[invoice])
    flow = await run(inp, sink)
    await flow.work("triage", "accept")
    await flow.work("investigate", "valid")  # 400.00 against an open balance of 100.00
    case = await flow.until(
        lambda c: any(t.step == "issue_credit" for t in c.tasks), "the refusal task"
    )
    [task] = [t for t in case.tasks if t.step == "issue_credit"]
    error = task.data["billing_error"]
    assert error["code"] == "amount_above_open_balance" and error["status"] == 422
    assert task.queue == "disputes-tier1" and task.allowed_outcomes == ["retry", "skip"]
    assert ledger.open_balance(invoice) == Decimal("100.00") and _memos(ledger, invoice) == 0
    assert case.status == "open"

    # The agent corrects the amount to what is open and retries: one memo, the case closes.
    await flow.work("issue_credit", "retry", data={"credit_amount": "100.00"})
    closed = await flow.closed()
    assert closed.resolution == "credited" and closed.data["credit_memo"]["amount"] == "100.00"
    assert ledger.open_balance(invoice) == Decimal("0.00") and _memos(ledger, invoice) == 1


async def test_a_billing_outage_makes_the_case_wait_then_finish(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, [invoice] = _customer(ledger, ("900.00", 3))
    inp = case_input("dispute", "250.00", customer_id=customer, invoice_ids=[invoice])
    flow = await run(inp, sink)
    await flow.work("triage", "accept")
    ledger.stop()  # billing goes down before the credit memo
    try:
        await flow.work("investigate", "valid")
        # Attempts at 0, 2 and 6 s fail; the next, 8 s later, finds billing back (below).
        await flow.env.sleep(timedelta(seconds=10))
        waiting = await flow.case()
        assert waiting.status == "open" and waiting.current_step == "issue_credit"
        assert not any(t.step == "issue_credit" for t in waiting.tasks)  # no person bothered
    finally:
        ledger.start()
    case = await flow.closed(seconds=40)
    assert case.resolution == "credited"
    assert _memos(ledger, invoice) == 1 and ledger.open_balance(invoice) == Decimal("650.00")


async def test_another_customers_invoice_never_reaches_billing(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, [invoice] = _customer(ledger, ("900.00", 3))
    _, [theirs] = _customer(ledger, ("900.00", 3))  # another customer's real invoice
    # On v1 task data is free-form: only the case's own check stands between it and billing.
    inp = case_input("dispute", "300.00", customer_id=customer, invoice_ids=[invoice], version=1)
    flow = await run(inp, sink)
    await flow.work("triage", "accept")
    await flow.work("investigate", "valid", data={"invoice_id": theirs})
    case = await flow.until(
        lambda c: any(t.step == "issue_credit" for t in c.tasks), "the refusal task"
    )
    [task] = [t for t in case.tasks if t.step == "issue_credit"]
    error = task.data["billing_error"]
    assert error["code"] == "invoice_not_on_case" and theirs in error["message"]
    assert task.queue == "disputes-tier1" and task.allowed_outcomes == ["retry", "skip"]
    assert _memos(ledger, theirs) == 0 and ledger.open_balance(theirs) == Decimal("900.00")
    assert not any(h.event == "billing_done" for h in case.history)

    # Put right by a person (the case's own invoice): one memo, on the case's invoice.
    await flow.work("issue_credit", "retry", data={"invoice_id": invoice})
    closed = await flow.closed()
    assert closed.data["credit_memo"]["invoice_id"] == invoice
    assert _memos(ledger, invoice) == 1 and _memos(ledger, theirs) == 0
