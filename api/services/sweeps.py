"""Sweeps over billing that open cases (overdue collections, credit reviews): one case per
customer and purpose, never two, however often and however concurrently a sweep runs.

A customer with an open case of the type is left alone. Otherwise the case id is derived
from what the case is about (the debt, the review period), so a rerun or a racing sweep
starts the same workflow once; a case of that id that already ended is not reopened by a
sweep, even when only Temporal still remembers it: that is a person's call.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from pydantic import ValidationError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.deps import Services
from api.errors import ApiError
from api.schemas import CaseCreate
from api.services.cases import case_vendor, open_case_as
from billing.contract import BillingUnavailableError, MalformedRecord
from billing.http_adapter import HttpBillingSystem
from domain.case_models import Actor
from domain.values import CASE_ID_PREFIX, CaseType
from escalations.calendars import UnknownCalendarError, get_calendar
from store.read_model import CaseFilter, get_case, list_cases
from workflows import client as cases

# opened: this call started the case; joined: another call started it at the same moment;
# already_open: an open case of the type was there; handled_earlier: the case ended before;
# skipped: the billing record cannot open a case (see `reason`); in_dispute: every overdue
# invoice of the customer is in an open dispute, so nothing is dunned (`reason` names them).
SweepStatus = Literal[
    "opened", "joined", "already_open", "handled_earlier", "skipped", "in_dispute"
]


@dataclass(frozen=True)
class SweepLine:
    customer_id: str
    status: SweepStatus
    case_id: str | None = None
    invoice_ids: list[str] = field(default_factory=list)
    amount: Decimal | None = None
    reason: str | None = None


def skipped(record: MalformedRecord) -> SweepLine:
    return SweepLine(record.customer_id, "skipped", reason=record.reason)


def case_body_or_skip(customer_id: str, **fields: object) -> CaseCreate | SweepLine:
    """The new case's request, or a `skipped` line naming what in the record is unusable."""
    try:
        return CaseCreate.model_validate({"customer_id": customer_id, **fields})
    except ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors()
        )
        return SweepLine(customer_id, "skipped", reason=reason)


@dataclass(frozen=True)
class VendorChoice:
    """Which vendor a sweep's new cases belong to: the customer's in `by_customer`, else
    `default`, else none (vendor-less: see CASEBOOK_VENDORLESS_CASES). The policy then
    checks the caller may open cases for it, as for `POST /cases`."""

    default: str | None = None
    by_customer: Mapping[str, str] = field(default_factory=dict)

    def of(self, customer_id: str) -> str | None:
        return self.by_customer.get(customer_id, self.default)


def check_vendors(actor: Actor, vendors: VendorChoice) -> None:
    """Every vendor the sweep would assign is one the caller may open cases for: refuse
    before opening any, not halfway through the customers."""
    for vendor in {vendors.default, *vendors.by_customer.values()}:
        case_vendor(actor, vendor)


def derived_case_id(case_type: CaseType, customer_id: str, about: str) -> str:
    """The same purpose always maps to the same case id (a workflow id: no slashes)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{CASE_ID_PREFIX[case_type]}-{customer_id}-{about}")


def check_region(region: str) -> None:
    """The new cases' SLAs run on the region's calendar: refuse before touching anything."""
    try:
        get_calendar(region)
    except UnknownCalendarError as exc:
        raise ApiError("invalid", f"region: {exc}", {"field": "region"}) from None


@asynccontextmanager
async def billing_of(svc: Services) -> AsyncIterator[HttpBillingSystem]:
    billing = HttpBillingSystem(
        svc.settings.billing_url, svc.settings.billing_token.get_secret_value()
    )
    try:
        yield billing
    except BillingUnavailableError as exc:
        raise ApiError("unavailable", f"billing did not answer: {exc}") from None
    finally:
        await billing.aclose()


def _line(body: CaseCreate, status: SweepStatus, case_id: str) -> SweepLine:
    return SweepLine(body.customer_id, status, case_id, body.invoice_ids, body.amount)


def _known(svc: Services, body: CaseCreate, case_id: str) -> SweepLine | None:
    with Session(svc.engine) as session:
        running = list_cases(
            session, CaseFilter(type=body.type, status="open", customer_id=body.customer_id)
        )
        if running:
            return _line(body, "already_open", running[0].id)
        earlier = get_case(session, case_id)
    if earlier is None:
        return None
    # Projected between the two reads by a racing sweep: open, not handled earlier.
    return _line(
        body, "already_open" if earlier.status == "open" else "handled_earlier", earlier.id
    )


async def open_once(svc: Services, actor: Actor, body: CaseCreate, case_id: str) -> SweepLine:
    known = await run_in_threadpool(_known, svc, body, case_id)
    if known is not None:
        return known
    try:
        snapshot = await open_case_as(svc, actor, body, case_id)
    except ApiError as exc:
        if exc.kind != "invalid":
            raise
        # Billing's record does not make a valid case (e.g. its contact is no address).
        return SweepLine(body.customer_id, "skipped", reason=exc.message)
    except WorkflowAlreadyStartedError:
        # Running: a racing call started it a moment ago. Ended: Temporal holds a case of
        # this id that the read model does not show.
        running = await cases.is_running(svc.temporal, case_id)
        return _line(body, "joined" if running else "handled_earlier", case_id)
    return _line(body, "opened", snapshot.id)
