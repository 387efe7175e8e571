"""The API wired to a real Temporal server, a real worker and a real database, in-process."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from sqlalchemy import Engine
from temporalio.client import Client, WorkflowHandle

from api.app import create_app
from domain.case_models import Actor, CaseInput, CaseSnapshot, CommandResult, Role, SopRef
from domain.values import CASE_ID_PREFIX
from escalations.matrix import routes_for, shipped_matrix
from settings import Settings
from sop_templates.registry import content_hash, shipped_documents
from sop_templates.schema import SopTemplate
from store.db import session_scope
from store.users import create_user
from workflows import case_logic
from workflows.worker import build_worker

T = TypeVar("T")

# Cases built here have no vendor: the agent that opens and works them is cross-vendor.
AGENT = Actor(name="ana", role=Role.AGENT, queues=["disputes-tier1"], cross_vendor=True)
# The vendor `Api.user` gives agents that name none (vendor isolation fails closed).
VENDOR = "acme"
LEAD = Actor(name="lee", role=Role.LEAD)

DISPUTE = {
    "type": "dispute",
    "customer_id": "CUST-001",
    "invoice_ids": ["INV-1001"],
    "amount": "1250.00",
    "currency": "USD",
    "region": "US",
    "reason_code": "pricing",
    "data": {"contact": "ap@customer.example"},
}
# The same dispute as `casebook dev`'s demo billing knows it (intake checks with billing):
# the demo invoice's currency, and the region left to the customer's master data (FR).
DEMO_DISPUTE = {k: v for k, v in DISPUTE.items() if k != "region"} | {"currency": "EUR"}


@dataclass
class Api:
    http: httpx.AsyncClient
    engine: Engine
    settings: Settings

    def user(
        self,
        role: Role | str,
        *,
        vendor: str | None = None,
        queues: list[str] | None = None,
        email: str | None = None,
        cross_vendor: bool = False,
    ) -> dict[str, str]:
        """A fresh user; returns its Authorization header. An agent works for `VENDOR`
        unless given a vendor or made cross-vendor."""
        if Role(role) == Role.AGENT and vendor is None and not cross_vendor:
            vendor = VENDOR
        with session_scope(self.engine) as session:
            _, token = create_user(
                session,
                name=f"{Role(role).value}-{uuid.uuid4().hex[:8]}",
                role=Role(role),
                vendor=vendor,
                queues=queues or [],
                email=email,
                cross_vendor=cross_vendor,
            )
        return {"Authorization": f"Bearer {token}"}

    async def settled_case(self, headers: dict[str, str], case_id: str) -> dict[str, Any]:
        """The case once its automatic steps (billing, emails) are done and it has closed."""

        async def probe() -> dict[str, Any]:
            return (await self.http.get(f"/cases/{case_id}", headers=headers)).json()

        return await eventually(probe, lambda case: case["status"] == "closed")

    async def open_dispute(self, headers: dict[str, str], **changes: Any) -> dict[str, Any]:
        """A new dispute once its first task is open: dispute v3 first marks its invoices
        disputed in billing (a customer billing does not know gets a refusal task instead)."""
        response = await self.http.post("/cases", json={**DISPUTE, **changes}, headers=headers)
        assert response.status_code == 201, response.text
        opened = response.json()
        if opened["tasks"]:
            return opened

        async def probe() -> dict[str, Any]:
            return (await self.http.get(f"/cases/{opened['id']}", headers=headers)).json()

        return await eventually(probe, lambda case: bool(case.get("tasks")))


@asynccontextmanager
async def running_api(client: Client, engine: Engine, **overrides: Any) -> AsyncIterator[Api]:
    """A worker on its own task queue and the app in-process, sharing `engine`."""
    # No reconciler passes unless a test asks: they would repair the rows tests forge.
    overrides = {"reconcile_every": 0, **overrides}
    settings = Settings(
        task_queue=f"cases-{uuid.uuid4().hex[:8]}", update_timeout_seconds=20, **overrides
    )
    app = create_app(settings, engine=engine, temporal=client)
    async with (
        build_worker(client, settings.task_queue, engine, settings),
        app.router.lifespan_context(app),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://casebook") as http:
            yield Api(http=http, engine=engine, settings=settings)


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float = 15.0
) -> T:
    """Poll `probe` until `accept` holds (the read model trails the workflow by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def command(handle: WorkflowHandle[Any, Any], update: str, cmd: Any) -> CaseSnapshot:
    """Send an Update to the case and read the case after it (an Update answers small: the
    task and the revision, never the case)."""
    result = await handle.execute_update(update, cmd, result_type=CommandResult)
    case = await handle.query("snapshot", result_type=CaseSnapshot)
    assert case.revision >= result.revision
    return case


def case_input(
    sop: str,
    amount: str,
    *,
    customer_id: str = "C1",
    invoice_ids: list[str] | None = None,
    reason_code: str | None = None,
    region: str = "FR",
    data: dict[str, Any] | None = None,
    case_id: str | None = None,
    version: int | None = None,
) -> CaseInput:
    """The input `POST /cases` would give the workflow for a case on a shipped SOP (its
    latest version unless `version` is given)."""
    document = shipped_document(sop, version)
    template = SopTemplate.model_validate(document)
    return CaseInput(
        case_id=case_id or f"{CASE_ID_PREFIX[template.case_type]}-{uuid.uuid4().hex[:8]}",
        case_type=template.case_type,
        customer_id=customer_id,
        invoice_ids=invoice_ids or ["INV-1"],
        amount=Decimal(amount),
        currency="EUR",
        region=region,
        reason_code=reason_code or template.reason_codes[0],
        data=data or {},
        opened_by=AGENT,
        sop=SopRef(name=sop, version=template.version, content_hash=content_hash(document)),
        template=template,
        escalation_routes=routes_for(template.queues(), region, None, shipped_matrix()),
        escalation_matrix_version=1,
        public_url="http://casebook.test",
    )


def shipped_document(name: str, version: int | None = None) -> dict[str, Any]:
    """A copy of a shipped SOP version (the latest unless `version` is given)."""
    documents = [d for d in shipped_documents() if d["name"] == name]
    if version is not None:
        return copy.deepcopy(next(d for d in documents if d["version"] == version))
    return copy.deepcopy(max(documents, key=lambda d: int(d["version"])))


def dispute_input(amount: str, region: str = "FR", case_id: str | None = None) -> CaseInput:
    return case_input("dispute", amount, region=region, case_id=case_id)


def opened_dispute(inp: CaseInput, now: datetime) -> CaseSnapshot:
    """A dispute as the workflow holds it right after the start: (v3) its invoices marked
    disputed in billing, its acknowledgement queued (with no contact on the case, to nobody)
    and the triage task open."""
    case = case_logic.open_case(inp, now)
    past_intake(case, inp.template, now)
    return case


def past_intake(case: CaseSnapshot, template: SopTemplate, now: datetime) -> None:
    """Carry a new dispute through its automatic first steps as the workflow would, up to its
    first task: the acknowledgement queued, and (v3) billing's answer to `open_dispute`."""
    while (action := case.pending_action) is not None:
        if action.kind == "email":
            case_logic.email_queued(case, template, [], now)
            continue
        step = template.step(action.step)
        assert getattr(step, "action", None) == "open_dispute", action
        dispute = {"id": case.id, "invoice_ids": case.invoice_ids, "status": "open"}
        case_logic.action_done(case, template, dispute, now)


async def terminate_cases(client: Client, case_ids: list[str]) -> None:
    """Stop cases and their escalations: left running without a worker, they would hold the
    time-skipping server's clock."""
    for case_id in case_ids:
        handle = client.get_workflow_handle(case_id)
        with contextlib.suppress(Exception):
            case = await handle.query("snapshot", result_type=CaseSnapshot)
            for esc in case.escalations:
                with contextlib.suppress(Exception):
                    await client.get_workflow_handle(esc.id).terminate("test over")
        for wf_id in (case_id, f"{case_id}.archive"):
            with contextlib.suppress(Exception):  # most are already complete
                await client.get_workflow_handle(wf_id).terminate("test over")
