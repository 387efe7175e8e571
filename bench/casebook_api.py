"""The Casebook HTTP API as the benchmark's agents and leads use it."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

QUEUE = "disputes-tier1"
FIRST_TASK_TIMEOUT_S = 60.0
BUSY_RETRIES = 10  # a 503 while opening cases for a scenario's setup: tries, a pause apart
BUSY_PAUSE_S = 2.0
# A dispute below the SOP's approval threshold (1000), so triage(accept) ->
# investigate(valid) closes it as credited (a credit memo in billing) with no lead involved.
DISPUTE = {
    "type": "dispute",
    "customer_id": "BENCH-CUST",
    "invoice_ids": ["BENCH-INV"],
    "amount": "500.00",
    "currency": "USD",
    "region": "US",
    "reason_code": "pricing",
    "data": {"contact": "ap@customer.example"},
}
# Every closed dispute credits 500.00 on the benchmark's invoice: a balance no run exhausts.
BENCH_BALANCE = "1000000000.00"


def put_bench_invoice(billing_url: str, token: str) -> None:
    """The customer and invoice the benchmark's disputes credit, in the built-in billing."""
    auth = {"Authorization": f"Bearer {token}"}
    customer = {"name": "Benchmark", "currency": "USD", "credit_limit": BENCH_BALANCE}
    _ok(httpx.put(f"{billing_url}/customers/BENCH-CUST", json=customer, headers=auth), 200)
    today = date.today().isoformat()
    invoice = {"customer_id": "BENCH-CUST", "issued_on": today, "due_on": today}
    invoice["amount"] = BENCH_BALANCE
    _ok(httpx.put(f"{billing_url}/invoices/BENCH-INV", json=invoice, headers=auth), 200)


# The outcome an agent gives each step of the shipped dispute SOP on the way to a close.
OUTCOMES = {"triage": "accept", "investigate": "valid"}
Headers = dict[str, str]


class ApiError(RuntimeError):
    """An answer the benchmark did not expect (it stops the scenario, never a figure)."""


def _ok(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in expected:
        raise ApiError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response


@dataclass(frozen=True)
class CasebookApi:
    http: httpx.AsyncClient

    @classmethod
    def connect(cls, base_url: str) -> CasebookApi:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        return cls(httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits))

    async def close(self) -> None:
        await self.http.aclose()

    async def open_dispute(self, headers: Headers) -> dict[str, Any]:
        return _ok(await self.http.post("/cases", json=DISPUTE, headers=headers), 201).json()

    async def open_dispute_patiently(self, headers: Headers) -> dict[str, Any]:
        """`open_dispute` for setup, not measured: a `503` (no worker answered in time, on an
        overloaded machine) is retried with the same `Idempotency-Key`, so never twice."""
        keyed = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        for _ in range(BUSY_RETRIES):
            response = await self.http.post("/cases", json=DISPUTE, headers=keyed)
            if response.status_code != 503:
                break
            await asyncio.sleep(BUSY_PAUSE_S)
        return _ok(response, 201).json()

    async def first_task(self, headers: Headers, case: dict[str, Any]) -> dict[str, Any]:
        """The case's first task: in the intake answer, or once open (a dispute v3 first marks
        its invoices disputed in billing, then opens triage)."""
        deadline = time.monotonic() + FIRST_TASK_TIMEOUT_S
        while not case["tasks"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{case['id']}: no task after {FIRST_TASK_TIMEOUT_S}s")
            await asyncio.sleep(0.05)
            case = _ok(await self.http.get(f"/cases/{case['id']}", headers=headers), 200).json()
        return dict(case["tasks"][0])

    async def tasks(self, headers: Headers, **params: Any) -> list[dict[str, Any]]:
        return _ok(await self.http.get("/tasks", params=params, headers=headers), 200).json()

    async def claim_next(self, headers: Headers, queue: str = QUEUE) -> dict[str, Any] | None:
        response = _ok(
            await self.http.post(f"/queues/{queue}/claim-next", headers=headers), 200, 204
        )
        return response.json() if response.status_code == 200 else None

    async def claim(self, headers: Headers, task_id: str) -> dict[str, Any]:
        return _ok(await self.http.post(f"/tasks/{task_id}/claim", headers=headers), 200).json()

    async def release(self, headers: Headers, task_id: str) -> dict[str, Any]:
        return _ok(await self.http.post(f"/tasks/{task_id}/release", headers=headers), 200).json()

    async def complete(self, headers: Headers, task_id: str, outcome: str) -> dict[str, Any]:
        response = await self.http.post(
            f"/tasks/{task_id}/complete", json={"outcome": outcome}, headers=headers
        )
        return _ok(response, 200).json()

    async def escalations(self, headers: Headers, **params: Any) -> list[dict[str, Any]]:
        response = await self.http.get("/escalations", params=params, headers=headers)
        return _ok(response, 200).json()
