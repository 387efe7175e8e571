"""Intake's check with billing, for every case a person or a sweep opens.

- The customer exists, each invoice exists, is the customer's and is in the case's currency
  (`billing/case_check.py`); otherwise 422 naming each wrong field and value, and nothing
  starts.
- What the request leaves out comes from the customer's master data in billing: `region`
  (the business calendar its SLAs count on), `currency`, and `data.contact`,
  `data.language`, `data.time_zone`. What the request gives is kept, except a region that
  contradicts billing's: refused, since the case would count its SLAs on a calendar that is
  not the customer's (leave `region` out to take billing's).
- Billing down (an outage, a timeout): nothing is refused. The case opens with a first step
  `intake_check` (billing action `verify_case`) ahead of its SOP's start: it waits for
  billing like any billing step, and a contradiction it finds becomes a task for a person
  (retry, or skip into the SOP). Region and currency must then be in the request (503
  otherwise: they cannot come from billing).

`CASEBOOK_INTAKE_CHECK=off` takes the request as it is (region and currency required).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from api.deps import Services
from api.errors import ApiError
from api.schemas import CaseCreate
from billing.case_check import CaseFacts, CaseMismatchError, check_case
from billing.contract import BillingBusinessError, BillingUnavailableError, Customer
from billing.http_adapter import HttpBillingSystem
from escalations.calendars import calendar_names
from sop_templates.schema import (
    DEFAULT_ERROR_QUEUE,
    INTAKE_CHECK_STEP,
    BillingStep,
    SopTemplate,
)

# A person waits on POST /cases: a billing that has not answered the whole check by then
# is "down" (the check is one call for the customer and one per invoice).
INTAKE_TIMEOUT_S = 5.0
# Case data billing's master data fills in when the request does not give it.
MASTER_DATA_FIELDS = {"contact": "email", "language": "language", "time_zone": "time_zone"}


@dataclass(frozen=True)
class Intake:
    body: CaseCreate  # region and currency set; data with the master data filled in
    verified: bool  # False: billing did not answer; the case checks as its first step


async def check_intake(svc: Services, body: CaseCreate) -> Intake:
    if svc.settings.intake_check == "off":
        return Intake(_complete(body, "intake does not check with billing", "invalid"), True)
    billing = HttpBillingSystem(
        svc.settings.billing_url, svc.settings.billing_token, timeout=INTAKE_TIMEOUT_S
    )
    facts = CaseFacts(body.customer_id, body.invoice_ids, body.currency, body.region)
    try:
        customer = await asyncio.wait_for(
            check_case(billing, facts, datetime.now(UTC).date()), INTAKE_TIMEOUT_S
        )
    except CaseMismatchError as exc:
        fields = [asdict(p) for p in exc.problems]
        raise ApiError("invalid", exc.message, {"fields": fields}) from None
    except (BillingUnavailableError, BillingBusinessError, TimeoutError):
        # Down, or refusing for its own reasons (a bad token): the case's first step asks
        # again, and what billing then answers is a person's to see.
        return Intake(_complete(body, "billing did not answer", "unavailable"), False)
    finally:
        await billing.aclose()
    return Intake(with_master_data(body, customer), True)


def _complete(body: CaseCreate, why: str, kind: str) -> CaseCreate:
    missing = [f for f in ("region", "currency") if getattr(body, f) is None]
    if missing:
        raise ApiError(
            kind,
            f"{', '.join(missing)}: {why}, so the customer's master data is not known; "
            "give them in the request",
            {"fields": [{"field": f, "message": "required"} for f in missing]},
        )
    return body


def with_master_data(body: CaseCreate, customer: Customer) -> CaseCreate:
    region = body.region or customer.region
    if not region:
        raise ApiError(
            "invalid",
            f"region: billing has no region for {customer.id}; give one",
            {"field": "region"},
        )
    if region not in calendar_names():
        raise ApiError(
            "invalid",
            f"region: billing's region {region!r} for {customer.id} is no business calendar "
            f"(known: {', '.join(calendar_names())}); give one",
            {"field": "region"},
        )
    defaults = {
        field: getattr(customer, attribute)
        for field, attribute in MASTER_DATA_FIELDS.items()
        if getattr(customer, attribute)
    }
    return body.model_copy(
        update={
            "region": region,
            "currency": body.currency or customer.currency,
            "data": {**defaults, **body.data},
        }
    )


def checked_first(template: SopTemplate) -> SopTemplate:
    """The template with the intake check as its first step, ahead of the SOP's start."""
    step = BillingStep(
        kind="billing",
        id=INTAKE_CHECK_STEP,
        title="Check the case with billing (billing did not answer at intake)",
        action="verify_case",
        args={
            "customer_id": "case.customer_id",
            "invoice_ids": "case.invoice_ids",
            "region": "case.region",
        },
        error_queue=DEFAULT_ERROR_QUEUE,
        next=template.start,
    )
    return template.model_copy(update={"start": step.id, "steps": [step, *template.steps]})
