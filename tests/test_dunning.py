"""Disputes in billing (the system of record for what is dunned), the collection's record of
what left dunning and came back, and SOP parameters that steer the ladder: billing over real
HTTP, the rest pure."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from billing.contract import BillingBusinessError
from billing.http_adapter import HttpBillingSystem
from sop_templates.validation import InvalidTemplateError, parse_template
from tests.billing_harness import BillingService
from tests.harness import case_input, shipped_document
from workflows import case_logic, dunning

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BillingService]:
    with BillingService(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'b.db'}") as billing:
        billing.put_customer("K-A")
        for n, amount in ((1, "500.00"), (2, "300.00")):
            due = TODAY - timedelta(days=20)
            billing.put_invoice(f"KA-{n}", "K-A", amount, due, due - timedelta(days=30))
        billing.put_customer("K-B")
        billing.put_invoice("KB-1", "K-B", "100.00", TODAY - timedelta(5), TODAY - timedelta(35))
        billing.put_customer("K-USD", currency="USD")
        billing.put_invoice("KU-1", "K-USD", "100.00", TODAY - timedelta(5), TODAY - timedelta(35))
        yield billing


@pytest_asyncio.fixture(loop_scope="session")
async def billing(service: BillingService) -> AsyncIterator[HttpBillingSystem]:
    adapter = HttpBillingSystem(service.url)
    yield adapter
    await adapter.aclose()


@pytest.mark.asyncio(loop_scope="session")
async def test_an_open_dispute_takes_its_invoice_out_of_dunning_until_it_closes(
    billing: HttpBillingSystem,
) -> None:
    opened = await billing.open_dispute(
        "DSP-T1", ["KA-2"], Decimal("300.00"), "pricing", "k1", customer_id="K-A", currency="EUR"
    )
    assert opened.status == "open" and opened.invoice_ids == ["KA-2"]
    exposure = await billing.customer_exposure("K-A", TODAY)
    assert exposure.overdue_amount == Decimal("800.00")  # still owed...
    assert exposure.dunning_amount == Decimal("500.00")  # ...but only this is dunned
    assert exposure.dunning_invoice_ids == ["KA-1"]
    [item] = exposure.disputes
    assert (item.invoice_id, item.dispute_id, item.status) == ("KA-2", "DSP-T1", "open")
    [line] = [c for c in (await billing.overdue_customers(TODAY)).records if c.customer_id == "K-A"]
    assert line.invoice_ids == ["KA-1"] and line.overdue_amount == Decimal("500.00")
    assert [(d.invoice_id, d.dispute_id) for d in line.disputed] == [("KA-2", "DSP-T1")]

    closed = await billing.close_dispute("DSP-T1", "rejected", "k2")
    assert closed.status == "closed" and closed.outcome == "rejected"
    assert await billing.close_dispute("DSP-T1", "rejected", "k3") == closed  # no change
    with pytest.raises(BillingBusinessError) as again:
        await billing.close_dispute("DSP-T1", "credited", "k4")
    assert (again.value.code, again.value.status) == ("dispute_closed", 409)
    exposure = await billing.customer_exposure("K-A", TODAY)
    assert exposure.dunning_invoice_ids == ["KA-1", "KA-2"]
    assert exposure.dunning_amount == Decimal("800.00")
    assert [(d.status, d.outcome) for d in exposure.disputes] == [("closed", "rejected")]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_dispute_names_the_collections_that_dunned_its_invoices(
    billing: HttpBillingSystem,
) -> None:
    notice = await billing.record_dunning_notice("COL-KB", "K-B", "overdue_notice", "n1")
    assert notice.invoice_ids == ["KB-1"] and notice.amount == Decimal("100.00")
    with pytest.raises(BillingBusinessError) as foreign:  # the case id goes into billing
        await billing.record_dunning_notice("COL/../x", "K-B", "overdue_notice", "n2")
    assert foreign.value.code == "invalid_id"
    dispute = await billing.open_dispute(
        "DSP-KB", ["KB-1"], Decimal("100.00"), "tax", "d1", customer_id="K-B", currency="EUR"
    )
    assert dispute.dunned_by == ["COL-KB"]
    await billing.close_dispute("DSP-KB", "not_a_dispute", "d2")


@pytest.mark.asyncio(loop_scope="session")
async def test_a_dispute_stays_on_its_customer_and_currency(billing: HttpBillingSystem) -> None:
    refusals = {
        "invoice_not_of_customer": ("K-A", "EUR", ["KB-1"]),
        "currency_mismatch": ("K-USD", "EUR", ["KU-1"]),
        "invoice_not_found": ("K-A", "EUR", ["KA-404"]),
    }
    for code, (customer, currency, invoices) in refusals.items():
        with pytest.raises(BillingBusinessError) as refused:
            await billing.open_dispute(
                f"DSP-{code[:8]}",
                invoices,
                Decimal("10.00"),
                "",
                f"key-{code}",
                customer_id=customer,
                currency=currency,
            )
        assert refused.value.code == code, refused.value
    with pytest.raises(BillingBusinessError) as unknown:
        await billing.close_dispute("DSP-NEVER", "rejected", "key-never")
    assert (unknown.value.code, unknown.value.status) == ("dispute_not_found", 404)
    [line] = [c for c in (await billing.overdue_customers(TODAY)).records if c.customer_id == "K-B"]
    assert line.disputed == [] and line.invoice_ids == ["KB-1"]  # nothing was opened


def _exposure(*disputes: tuple[str, str, str, str, str]) -> dict[str, Any]:
    keys = ("invoice_id", "dispute_id", "status", "outcome", "open_balance")
    return {"disputes": [dict(zip(keys, d, strict=True)) for d in disputes]}


def test_the_collection_records_why_an_invoice_left_dunning_and_came_back() -> None:
    assert dunning.changes({"overdue_amount": "1"}, {"overdue_amount": "1"}) == []  # old billing
    first = _exposure(("INV-2", "DSP-1", "open", "", "300.00"))
    [(event, left)] = dunning.changes(None, first)
    assert event == dunning.LEFT and (left["invoice_id"], left["dispute_id"]) == ("INV-2", "DSP-1")
    assert dunning.changes(first, first) == []  # nothing new: nothing recorded
    later = _exposure(("INV-2", "DSP-1", "closed", "credited", "120.00"))
    [(event, back)] = dunning.changes(first, later)
    assert event == dunning.RETURNED
    assert (back["outcome"], back["open_balance"]) == ("credited", "120.00")


def _collection(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(shipped_document("collection", 2))
    document.update(version=3, **changes)
    return document


def test_a_declared_parameter_nothing_reads_is_an_error_in_a_new_version() -> None:
    document = _collection(parameters={**_collection()["parameters"], "late_fee": "25.00"})
    with pytest.raises(InvalidTemplateError) as raised:
        parse_template(document, require_approval_rules=True)
    [error] = raised.value.errors
    assert error.path == "parameters.late_fee" and "nothing reads it" in error.message
    parse_template(document)  # a pinned version (cases carry it) still parses
    # Read by an email: the parameter is used.
    document["emails"]["final_demand"]["text"] += "A fee of {{ params.late_fee }} applies.\n"
    parse_template(document, require_approval_rules=True)
    # v1 shipped `reminder_wait` and fixed its waits in the steps: as a new version, refused.
    v1 = {**copy.deepcopy(shipped_document("collection", 1)), "version": 3}
    with pytest.raises(InvalidTemplateError) as unread:
        parse_template(v1, require_approval_rules=True)
    assert [e.path for e in unread.value.errors] == ["parameters.reminder_wait"]


def test_a_wait_reads_its_duration_from_the_parameters() -> None:
    document = _collection(start="wait_before_reminder")
    document["parameters"]["reminder_wait"] = "3d"
    template = parse_template(document, require_approval_rules=True)
    inp = case_input("collection", "500.00").model_copy(update={"template": template})
    case = case_logic.open_case(inp, NOW)
    assert case.waiting_until == NOW + timedelta(days=3)

    document["parameters"]["reminder_wait"] = "next week"
    with pytest.raises(InvalidTemplateError) as raised:
        parse_template(document)
    [error] = raised.value.errors
    assert error.path == "parameters.reminder_wait" and "steps[" in error.message
