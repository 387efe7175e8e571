"""Disputes and dunning, holds and payment, end to end: time-skipping Temporal, the built-in
billing service over HTTP (the system of record), real SMTP on loopback. What we look at is
what a customer receives and what billing shows.

The collection runs on one time-skipping server, the dispute on another (same ledger): a
closed case's archive child keeps a server from skipping time (tests/conftest.py), and the
collection has weeks to go after the dispute closes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from billing.http_adapter import HttpBillingSystem
from domain.case_models import CaseInput
from settings import Settings
from tests.billing_harness import BillingService
from tests.conftest import start_time_skipping
from tests.harness import LEAD, case_input, terminate_cases
from tests.smtp_sink import SmtpSink
from tests.test_case_types_e2e import Flow
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")
TODAY = date.today()  # the billing service ages invoices on the real calendar
CONTACT = "ap@customer.test"
WEEK, TWO_WEEKS = timedelta(days=7, minutes=1), timedelta(days=14, minutes=1)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BillingService]:
    with BillingService(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'billing.db'}") as billing:
        yield billing


@pytest_asyncio.fixture(loop_scope="session")
async def servers() -> AsyncIterator[tuple[WorkflowEnvironment, WorkflowEnvironment]]:
    """(collections' server, disputes' server): one per test (see the module docstring)."""
    collections, disputes = await start_time_skipping(), await start_time_skipping()
    yield collections, disputes
    await disputes.shutdown()
    await collections.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def run(
    servers: tuple[WorkflowEnvironment, ...], sqlite_engine: Engine, ledger: BillingService
) -> AsyncIterator[Callable[..., Any]]:
    """Start a case on a server (0: collections, 1: disputes) wired to the ledger and a sink."""
    started: list[tuple[WorkflowEnvironment, str]] = []
    workers: list[Any] = []

    async def start(inp: CaseInput, sink: SmtpSink, server: int = 0) -> Flow:
        env = servers[server]
        settings = Settings(
            smtp_host="127.0.0.1", smtp_port=sink.port, billing_url=ledger.url, mail_from="ar@o2c"
        )
        queue = f"dunning-{uuid.uuid4().hex[:8]}"
        worker = build_worker(env.client, queue, sqlite_engine, settings)
        await worker.__aenter__()
        workers.append(worker)
        started.append((env, inp.case_id))
        handle = await env.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=queue
        )
        return Flow(env, handle)

    yield start
    for env, case_id in started:
        await terminate_cases(env.client, [case_id])
    for worker in workers:
        await worker.__aexit__(None, None, None)


@pytest.fixture
def dispute_mail() -> Iterator[SmtpSink]:
    server = SmtpSink()
    server.start()
    yield server
    server.stop()


def _customer(ledger: BillingService, *amounts: str, past_due: int = 20) -> tuple[str, list[str]]:
    customer = f"D-{uuid.uuid4().hex[:6]}"
    ledger.put_customer(customer, limit="20000.00")
    due = TODAY - timedelta(days=past_due)
    ids = [f"{customer}-{n}" for n in range(len(amounts))]
    for invoice, amount in zip(ids, amounts, strict=True):
        ledger.put_invoice(invoice, customer, amount, due, due - timedelta(days=30))
    return customer, ids


def _collection(customer: str, invoices: list[str], amount: str) -> CaseInput:
    return case_input(
        "collection",
        amount,
        customer_id=customer,
        invoice_ids=invoices,
        region="24x7",
        data={"contact": CONTACT},
    )


def _dispute(customer: str, invoice: str, amount: str) -> CaseInput:
    return case_input(
        "dispute",
        amount,
        customer_id=customer,
        invoice_ids=[invoice],
        region="24x7",
        data={"contact": CONTACT},
    )


async def _notices(sink: SmtpSink, count: int) -> list[tuple[str, str]]:
    """(subject, the sentence naming what is overdue and the rest of the body) of each."""
    for _ in range(300):
        if len(sink.messages()) >= count:
            break
        await asyncio.sleep(0.05)
    messages = sink.messages()
    assert len(messages) == count, [str(m["Subject"]) for m in messages]
    return [
        (str(m["Subject"]), m.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        for m in messages
    ]


def _dunned(body: str) -> str:
    """The lines a notice dunns with (amount and invoices), without the disputed remark."""
    head = body.split("Reference:")[0]
    return " ".join(line for line in head.splitlines() if "left out" not in line)


async def _start_dispute(
    run: Callable[..., Any], sink: SmtpSink, ledger: BillingService, customer: str, invoice: str
) -> Flow:
    dispute = await run(_dispute(customer, invoice, "300.00"), sink, 1)
    await dispute.until(lambda c: c.current_step == "triage", "the dispute reaches triage")
    [listed] = ledger.get(f"/invoices?id={invoice}")  # type: ignore[misc]
    assert listed["disputed_by"] == dispute.handle.id  # billing: out of dunning
    return dispute


async def _at_reminder_wait(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink, *amounts: str
) -> tuple[str, list[str], Flow]:
    """A collection over a new customer's overdue invoices, its call unanswered: the first
    notice is out and the ladder waits for the reminder."""
    customer, invoices = _customer(ledger, *amounts)
    total = str(sum(Decimal(a) for a in amounts))
    collection = await run(_collection(customer, invoices, total), sink)
    await collection.work("contact_customer", "no_contact")
    await collection.until(lambda c: c.waiting_until is not None, "the reminder wait")
    return customer, invoices, collection


async def test_a_disputed_invoice_leaves_the_notices_until_the_dispute_is_rejected(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink, dispute_mail: SmtpSink
) -> None:
    customer, [kept, disputed], collection = await _at_reminder_wait(
        run, ledger, sink, "500.00", "300.00"
    )
    [(_, first)] = await _notices(sink, 1)
    assert kept in _dunned(first) and disputed in _dunned(first) and "800.00" in first

    # Mid-ladder the customer disputes the second invoice: the dispute case marks it.
    dispute = await _start_dispute(run, dispute_mail, ledger, customer, disputed)
    await collection.env.sleep(WEEK)
    await collection.until(lambda c: c.current_step == "wait_before_final_demand", "reminder")
    _, (subject, reminder) = await _notices(sink, 2)
    assert subject.startswith("Reminder:")
    assert kept in _dunned(reminder) and disputed not in _dunned(reminder)
    assert "500.00" in _dunned(reminder) and "800.00" not in reminder
    assert f"Invoice {disputed} is left out" in reminder and dispute.handle.id in reminder
    case = await collection.case()
    [left] = [h for h in case.history if h.event == "invoice_left_dunning"]
    assert left.detail["invoice_id"] == disputed
    assert left.detail["dispute_id"] == dispute.handle.id  # the link, on the collection

    # The dispute is rejected: the invoice is dunned again in the next notice.
    await dispute.work("triage", "accept")
    await dispute.work("investigate", "invalid", data={"root_cause": "price was agreed"})
    closed = await dispute.closed()
    assert closed.resolution == "rejected"
    block = closed.data["dunning_block"]  # the link, on the dispute: billing's answer
    assert block["invoice_ids"] == [disputed] and block["dunned_by"] == [collection.handle.id]
    assert closed.data["dunning_release"]["outcome"] == "rejected"
    await collection.env.sleep(TWO_WEEKS)
    await collection.until(lambda c: c.current_step == "hand_off", "the final demand")
    *_, (subject, demand) = await _notices(sink, 3)
    assert subject.startswith("Final demand")
    assert kept in _dunned(demand) and disputed in _dunned(demand) and "800.00" in demand
    assert "left out" not in demand
    case = await collection.case()
    [back] = [h for h in case.history if h.event == "invoice_back_in_dunning"]
    assert back.detail["invoice_id"] == disputed and back.detail["outcome"] == "rejected"
    assert back.detail["dispute_id"] == dispute.handle.id


async def test_a_partly_credited_dispute_puts_only_the_rest_back_in_dunning(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink, dispute_mail: SmtpSink
) -> None:
    customer, [kept, disputed], collection = await _at_reminder_wait(
        run, ledger, sink, "500.00", "1000.00"
    )
    dispute = await _start_dispute(run, dispute_mail, ledger, customer, disputed)
    await collection.env.sleep(WEEK)
    await collection.until(lambda c: c.current_step == "wait_before_final_demand", "reminder")
    _, (_, reminder) = await _notices(sink, 2)
    assert "500.00" in _dunned(reminder) and disputed not in _dunned(reminder)

    # 400.00 of the invoice is credited (below the approval threshold): 600.00 stays due.
    await dispute.work("triage", "accept")
    await dispute.work("investigate", "valid", data={"credit_amount": "400.00"})
    closed = await dispute.closed()
    assert closed.resolution == "credited" and ledger.open_balance(disputed) == Decimal("600.00")
    await collection.env.sleep(TWO_WEEKS)
    await collection.until(lambda c: c.current_step == "hand_off", "the final demand")
    *_, (_, demand) = await _notices(sink, 3)
    assert kept in _dunned(demand) and disputed in _dunned(demand)
    assert "1100.00" in _dunned(demand)  # 500.00 and the 600.00 left of the disputed one
    case = await collection.case()
    [back] = [h for h in case.history if h.event == "invoice_back_in_dunning"]
    assert back.detail["outcome"] == "credited" and back.detail["open_balance"] == "600.00"


async def test_a_customer_on_hold_pays_and_the_closing_case_lifts_the_hold(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, [invoice], collection = await _at_reminder_wait(run, ledger, sink, "500.00")
    await collection.env.sleep(WEEK)
    await collection.until(lambda c: c.current_step == "wait_before_final_demand", "reminder")
    await collection.env.sleep(TWO_WEEKS)
    await collection.until(lambda c: c.current_step == "hand_off", "the hold and hand-off")
    held = ledger.get(f"/customers/{customer}")
    assert held["on_hold"] is True and held["hold_reason"] == collection.handle.id  # type: ignore[index]

    ledger.pay(invoice, "500.00", key=f"bank-{customer}")  # the customer pays
    await collection.work("hand_off", "paid", actor=LEAD)
    case = await collection.closed()
    assert case.resolution == "paid"
    assert ledger.get(f"/customers/{customer}")["on_hold"] is False  # type: ignore[index]
    released = [h for h in case.history if h.event == "billing_done" and h.step == "release_hold"]
    assert released and released[0].detail["on_hold"] is False


async def test_a_hold_someone_else_put_on_stays_and_the_case_says_why(
    run: Callable[..., Any], ledger: BillingService, sink: SmtpSink
) -> None:
    customer, [invoice] = _customer(ledger, "500.00")
    billing = HttpBillingSystem(ledger.url)
    await billing.set_credit_hold(customer, True, "credit review CRR-1", f"hold-{customer}")
    await billing.aclose()
    ledger.pay(invoice, "500.00", key=f"bank-{customer}")  # paid before the case looks
    case = await (await run(_collection(customer, [invoice], "500.00"), sink)).closed()
    assert case.resolution == "paid"
    assert case.data["hold_kept"]["held_by"] == "credit review CRR-1"
    assert ledger.get(f"/customers/{customer}")["on_hold"] is True  # type: ignore[index]
