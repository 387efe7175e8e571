"""The work of a fault run: disputes opened over HTTP and agents working them to their end.

Agents behave as people at a flaky console would: a refused or failed request is tried
again a moment later; a task they hold but could not complete is completed again (or
claimed again if the case says it is open); everything else comes from claim-next.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from bench.casebook_api import DISPUTE, OUTCOMES, ApiError, CasebookApi, Headers

CUSTOMER = "CHAOS-CUST"
QUEUES = ("disputes-tier1", "collections-tier1")
OVERDUE = "900.00"  # each collection's one overdue invoice
# A collection's call ends in a payment plan that covers the balance in one installment.
PLAN = {
    "installments": [{"due_on": (date.today() + timedelta(days=30)).isoformat(), "amount": OVERDUE}]
}
# What an agent answers at each step: the disputes' close as credited, the collections'.
WORK: dict[str, tuple[str, dict[str, Any]]] = {
    **{step: (outcome, {}) for step, outcome in OUTCOMES.items()},
    "contact_customer": ("payment_plan", PLAN),
}
RETRY_PAUSE_S = 0.5
IDLE_PAUSE_S = 0.5
# A request that fails because a part is down is not the run's failure: it is tried again.
TRANSIENT = (ApiError, httpx.HTTPError)


def invoice_of(n: int, run: str) -> str:
    return f"CHAOS-{run}-INV{n}"


def put_invoices(billing_url: str, token: str, run: str, count: int) -> list[str]:
    """One invoice per dispute in the built-in billing, so each credit memo is countable."""
    auth = {"Authorization": f"Bearer {token}"}
    customer = {"name": "Chaos", "currency": "USD", "credit_limit": "1000000.00"}
    _put(f"{billing_url}/customers/{CUSTOMER}", customer, auth)
    today = date.today().isoformat()
    invoices = [invoice_of(n, run) for n in range(count)]
    for invoice_id in invoices:
        body = {"customer_id": CUSTOMER, "issued_on": today, "due_on": today, "amount": "900.00"}
        _put(f"{billing_url}/invoices/{invoice_id}", body, auth)
    return invoices


def put_overdue_customers(billing_url: str, token: str, run: str, count: int) -> list[str]:
    """One customer per collection, each with one invoice a month overdue."""
    auth = {"Authorization": f"Bearer {token}"}
    due = (date.today() - timedelta(days=30)).isoformat()
    customers = [f"CHAOS-{run}-C{n}" for n in range(count)]
    for customer_id in customers:
        customer = {"name": "Chaos debtor", "currency": "USD", "credit_limit": "5000.00"}
        _put(f"{billing_url}/customers/{customer_id}", customer, auth)
        body = {"customer_id": customer_id, "issued_on": due, "due_on": due, "amount": OVERDUE}
        _put(f"{billing_url}/invoices/{customer_id}-INV", body, auth)
    return customers


def _put(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    response = httpx.put(url, json=body, headers=headers, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"PUT {url}: {response.status_code} {response.text[:200]}")


async def open_dispute(api: CasebookApi, headers: Headers, invoice_id: str) -> str:
    body = {**DISPUTE, "customer_id": CUSTOMER, "invoice_ids": [invoice_id]}
    return await _open(api, headers, body)


async def open_collection(api: CasebookApi, headers: Headers, customer_id: str) -> str:
    body = {
        **DISPUTE,
        "type": "collection",
        "customer_id": customer_id,
        "invoice_ids": [f"{customer_id}-INV"],
        "amount": OVERDUE,
        "reason_code": "overdue",
    }
    return await _open(api, headers, body)


async def _open(api: CasebookApi, headers: Headers, body: dict[str, Any]) -> str:
    """POST /cases until it answers (the same Idempotency-Key: a retry joins the first)."""
    keyed = {**headers, "Idempotency-Key": f"chaos-{uuid.uuid4().hex}"}
    while True:
        try:
            response = await api.http.post("/cases", json=body, headers=keyed)
        except httpx.HTTPError:
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        if response.status_code in (200, 201):
            return str(response.json()["id"])
        if response.status_code < 500 and response.status_code != 409:
            raise ApiError(f"POST /cases: {response.status_code} {response.text[:300]}")
        await asyncio.sleep(RETRY_PAUSE_S)


@dataclass
class Agents:
    """Agents working the dispute queue until `done` is set; counts what went wrong."""

    api: CasebookApi
    headers: list[Headers]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    completed: int = 0
    retried: int = 0

    async def run(self) -> None:
        await asyncio.gather(*(self._agent(h) for h in self.headers))

    async def _agent(self, headers: Headers) -> None:
        held: set[str] = set()
        while not self.done.is_set():
            try:
                held |= await self._mine(headers)
                for task_id in sorted(held):
                    if await self._finish(headers, task_id):
                        held.discard(task_id)
                claimed = [await self.api.claim_next(headers, queue) for queue in QUEUES]
            except TRANSIENT:
                self.retried += 1
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            held |= {task["id"] for task in claimed if task is not None}
            if not any(claimed):
                await asyncio.sleep(IDLE_PAUSE_S)

    async def _mine(self, headers: Headers) -> set[str]:
        """The tasks the inbox shows this agent holding (what a person would look at)."""
        tasks = await self.api.tasks(headers, assignee="me", status="claimed")
        return {t["id"] for t in tasks}

    async def _finish(self, headers: Headers, task_id: str) -> bool:
        """Complete a held task; True once it needs nothing more from this agent."""
        outcome, data = WORK[_step_of(task_id, await self._task(headers, task_id))]
        response = await self.api.http.post(
            f"/tasks/{task_id}/complete", json={"outcome": outcome, "data": data}, headers=headers
        )
        if response.status_code == 200:
            self.completed += 1
            return True
        if response.status_code == 409:
            return await self._after_conflict(headers, task_id)
        self.retried += 1
        return False

    async def _after_conflict(self, headers: Headers, task_id: str) -> bool:
        """A 409: done already (nothing to do), or not held (claim it again, then retry)."""
        task = await self._task(headers, task_id)
        if task is None or task["status"] == "done":
            return True
        if task["status"] == "open":
            claimed = await self.api.http.post(f"/tasks/{task_id}/claim", headers=headers)
            return claimed.status_code == 409  # someone else has it now
        return False

    async def _task(self, headers: Headers, task_id: str) -> dict[str, Any] | None:
        """The task as its case (the workflow, via GET /cases/{id}) shows it."""
        case_id = task_id.rpartition(".t")[0]
        response = await self.api.http.get(f"/cases/{case_id}", headers=headers)
        if response.status_code != 200:
            raise ApiError(f"GET /cases/{case_id}: {response.status_code}")
        return next((t for t in response.json()["tasks"] if t["id"] == task_id), None)


def _step_of(task_id: str, task: dict[str, Any] | None) -> str:
    if task is None:
        raise ApiError(f"{task_id} is not on its case")
    return str(task["step"])
