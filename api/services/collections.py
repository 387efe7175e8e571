"""The overdue scan: one collection case per customer with overdue invoices, never two.

A customer with an open collection case is left alone. Otherwise the case id is derived
from the debt (the customer and its oldest overdue invoice), so a scan run twice, or two
scans racing, start the same workflow once; a debt whose case already ended (handed off,
disputed) is not reopened by a scan: that is a person's call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.deps import Services
from api.errors import ApiError
from api.schemas import CaseCreate
from api.services.cases import TYPE_PREFIX, open_case_as
from billing.contract import BillingUnavailableError, OverdueCustomer
from billing.http_adapter import HttpBillingSystem
from escalations.calendars import UnknownCalendarError, get_calendar
from store.read_model import CaseFilter, get_case, list_cases
from workflows.case_models import Actor

ScanStatus = Literal["opened", "already_open", "handled_earlier"]


@dataclass(frozen=True)
class ScanLine:
    customer_id: str
    status: ScanStatus
    case_id: str
    invoice_ids: list[str]
    overdue_amount: Decimal


def debt_case_id(line: OverdueCustomer) -> str:
    """The same debt always maps to the same case id (a workflow id: no slashes or spaces)."""
    raw = f"{TYPE_PREFIX['collection']}-{line.customer_id}-{line.invoice_ids[0]}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


def _known(svc: Services, line: OverdueCustomer) -> ScanLine | None:
    with Session(svc.engine) as session:
        running = list_cases(
            session, CaseFilter(type="collection", status="open", customer_id=line.customer_id)
        )
        if running:
            return _line(line, "already_open", running[0].id)
        earlier = get_case(session, debt_case_id(line))
    return _line(line, "handled_earlier", earlier.id) if earlier else None


def _line(line: OverdueCustomer, status: ScanStatus, case_id: str) -> ScanLine:
    return ScanLine(line.customer_id, status, case_id, line.invoice_ids, line.overdue_amount)


async def scan_overdue(
    svc: Services, actor: Actor, region: str, as_of: date | None, min_days: int
) -> list[ScanLine]:
    try:
        get_calendar(region)  # the cases' SLAs run on it: refuse before touching anything
    except UnknownCalendarError as exc:
        raise ApiError("invalid", f"region: {exc}", {"field": "region"}) from None
    billing = HttpBillingSystem(svc.settings.billing_url)
    try:
        overdue = await billing.overdue_customers(as_of or datetime.now(UTC).date(), min_days)
    except BillingUnavailableError as exc:
        raise ApiError("unavailable", f"billing did not answer: {exc}") from None
    finally:
        await billing.aclose()
    results = []
    for line in overdue:
        known = await run_in_threadpool(_known, svc, line)
        if known is not None:
            results.append(known)
            continue
        body = CaseCreate(
            type="collection",
            customer_id=line.customer_id,
            invoice_ids=line.invoice_ids,
            amount=str(line.overdue_amount),
            currency=line.currency,
            region=region,
            reason_code="overdue",
            data={"contact": line.email, "max_days_past_due": line.max_days_past_due},
        )
        try:
            snapshot = await open_case_as(svc, actor, body, debt_case_id(line))
        except WorkflowAlreadyStartedError:
            # Temporal holds an ended case for this debt that the read model does not show.
            results.append(_line(line, "handled_earlier", debt_case_id(line)))
            continue
        results.append(_line(line, "opened", snapshot.id))
    return results
