"""Money controls end to end: the API, a worker and the real Temporal dev server, with the
built-in billing service over HTTP. The attacks of the security review (issue 11), as an
agent would try them, and what the ledger shows after."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.billing_harness import BillingService
from tests.harness import Api, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")
TIER1, TIER2 = "disputes-tier1", "disputes-tier2"


def _customer(ledger: BillingService, **balances: str) -> tuple[str, dict[str, str]]:
    """A fresh customer in the ledger with invoices named by their role in the test."""
    customer = f"K-{uuid.uuid4().hex[:8]}"
    ledger.put_customer(customer)
    today = date.today()
    invoices = {}
    for name, amount in balances.items():
        invoices[name] = f"{customer}-{name}"
        ledger.put_invoice(invoices[name], customer, amount, today, today - timedelta(days=30))
    return customer, invoices


async def _open(api: Api, agent: dict[str, str], customer: str, invoices: list[str]) -> str:
    body = {
        "type": "dispute",
        "customer_id": customer,
        "invoice_ids": invoices,
        "amount": "500.00",
        "currency": "EUR",
        "region": "US",
        "reason_code": "pricing",
        "data": {"contact": "ap@customer.example"},
    }
    response = await api.http.post("/cases", json=body, headers=agent)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _case_when(
    api: Api, who: dict[str, str], case_id: str, accept: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        return (await api.http.get(f"/cases/{case_id}", headers=who)).json()

    return await eventually(probe, accept)


def _open_task(case: dict[str, Any], step: str) -> dict[str, Any] | None:
    return next((t for t in case["tasks"] if t["step"] == step and t["status"] != "done"), None)


async def _task(api: Api, who: dict[str, str], case_id: str, step: str) -> dict[str, Any]:
    case = await _case_when(api, who, case_id, lambda c: _open_task(c, step) is not None)
    task = _open_task(case, step)
    assert task is not None, f"no open {step} task: {case['current_step']} {case['history']}"
    return task


async def _claim(api: Api, who: dict[str, str], task: dict[str, Any]) -> None:
    claimed = await api.http.post(f"/tasks/{task['id']}/claim", headers=who)
    assert claimed.status_code == 200, claimed.text


async def _work(
    api: Api, who: dict[str, str], case_id: str, step: str, outcome: str, **data: str
) -> None:
    task = await _task(api, who, case_id, step)
    await _claim(api, who, task)
    body = {"outcome": outcome, "data": data}
    done = await api.http.post(f"/tasks/{task['id']}/complete", json=body, headers=who)
    assert done.status_code == 200, done.text


async def test_an_agents_retry_with_a_large_credit_waits_for_a_lead(
    api: Api, backing_services: BillingService
) -> None:
    ledger = backing_services
    customer, invoices = _customer(ledger, small="100.00", big="300000.00")
    agent, lead = api.user("agent", queues=[TIER1]), api.user("lead", queues=[TIER2])
    case_id = await _open(api, agent, customer, [invoices["small"], invoices["big"]])
    await _work(api, agent, case_id, "triage", "accept")
    # 500.00 (no lead needed) against an invoice with 100.00 open: billing refuses, and the
    # refusal comes back as a task in the agent's own queue.
    await _work(api, agent, case_id, "investigate", "valid", invoice_id=invoices["small"])
    refusal = await _task(api, agent, case_id, "issue_credit")
    assert refusal["queue"] == TIER1

    # The attack: answer the refusal with a quarter of a million on the other invoice.
    await _work(
        api,
        agent,
        case_id,
        "issue_credit",
        "retry",
        credit_amount="250000",
        invoice_id=invoices["big"],
    )

    approval = await _task(api, lead, case_id, "lead_approval")
    assert approval["queue"] == TIER2
    case = await _case_when(api, lead, case_id, lambda c: True)
    assert case["status"] == "open" and case["current_step"] == "lead_approval"
    [required] = [h for h in case["history"] if h["event"] == "approval_required"]
    assert required["step"] == "issue_credit" and required["detail"]["amount"] == "250000"
    assert ledger.open_balance(invoices["big"]) == Decimal("300000.00")  # nothing credited
    refused = await api.http.post(f"/tasks/{approval['id']}/claim", headers=agent)
    assert refused.status_code == 403, refused.text  # the agent cannot take the lead's task
    # Nor can an agent who serves the lead queue approve it.
    tier2_agent = api.user("agent", queues=[TIER2])
    await _claim(api, tier2_agent, approval)
    body = {"outcome": "approve", "data": {}}
    url = f"/tasks/{approval['id']}/complete"
    not_theirs = await api.http.post(url, json=body, headers=tier2_agent)
    assert not_theirs.status_code == 403 and "may not approve" in not_theirs.text
    released = await api.http.post(f"/tasks/{approval['id']}/release", headers=tier2_agent)
    assert released.status_code == 200, released.text

    # The lead approves on the board: the memo goes out, for exactly the approved amount.
    board = await api.http.get("/escalations", params={"case_id": case_id}, headers=lead)
    [esc] = [e for e in board.json() if e["task_id"] == approval["id"]]
    approved = await api.http.post(f"/escalations/{esc['id']}/approve", json={}, headers=lead)
    assert approved.status_code == 200, approved.text

    closed = await api.settled_case(lead, case_id)
    assert closed["resolution"] == "credited", closed["history"]
    [granted] = [h for h in closed["history"] if h["event"] == "approval_granted"]
    assert granted["detail"] == {"billing_step": "issue_credit", "amount": "250000", "role": "lead"}
    memo = closed["data"]["credit_memo"]
    assert memo["invoice_id"] == invoices["big"] and Decimal(memo["amount"]) == Decimal("250000")
    assert ledger.open_balance(invoices["big"]) == Decimal("50000.00")
    assert ledger.open_balance(invoices["small"]) == Decimal("100.00")


async def test_an_id_that_would_change_a_billing_url_is_refused_at_completion(
    api: Api, backing_services: BillingService
) -> None:
    customer, invoices = _customer(backing_services, only="900.00")
    agent = api.user("agent", queues=[TIER1])
    case_id = await _open(api, agent, customer, [invoices["only"]])
    await _work(api, agent, case_id, "triage", "accept")
    task = await _task(api, agent, case_id, "investigate")
    await _claim(api, agent, task)
    before = await _case_when(api, agent, case_id, lambda c: True)

    for bad in ("INV-1/payments?", "K-OTHER-1"):  # a URL trick; another customer's invoice
        body = {"outcome": "valid", "data": {"invoice_id": bad, "credit_amount": "10.00"}}
        response = await api.http.post(f"/tasks/{task['id']}/complete", json=body, headers=agent)
        assert response.status_code == 422, response.text
        error = response.json()
        assert error["message"].startswith("data.invoice_id: must be one of the case's invoices")
        assert [f["field"] for f in error["details"]["fields"]] == ["data.invoice_id"]

    after = await _case_when(api, agent, case_id, lambda c: True)
    assert after["history"] == before["history"] and after["revision"] == before["revision"]
    [held] = [t for t in before["tasks"] if t["id"] == task["id"]]
    [still] = [t for t in after["tasks"] if t["id"] == task["id"]]
    assert still == held and still["status"] == "claimed"  # still the agent's, unchanged
    assert backing_services.open_balance(invoices["only"]) == Decimal("900.00")
