"""The billing activity: one SOP billing step, through the BillingSystem port, exactly once.

Every mutating call carries the idempotency key the case derived for this step, so a
retried activity never issues a second credit memo. Refusals (4xx) are business errors:
not retried, they come back to the case, which hands them to a person.

Writes are bound to the case's own customer and currency (`case_customer_id`,
`case_currency`, set by the case, never by the SOP's expressions, which may read what a
person typed): a credit memo carries them to billing, which refuses an invoice of another
customer or currency; a customer write whose `customer_id` is another customer's is refused
here (`customer_mismatch`). A dispute opened or closed in billing is the case itself (its id).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, SecretStr
from temporalio import activity
from temporalio.exceptions import ApplicationError

from billing.case_check import CaseFacts, check_case
from billing.contract import BillingBusinessError, BillingSystem, Customer, Installment
from billing.http_adapter import HttpBillingSystem
from sop_templates.schema import BillingAction

BILLING_CALL = "billing_call"
BUSINESS_ERROR = "BillingBusinessError"


class BillingRequest(BaseModel):
    action: str
    args: dict[str, Any]
    idempotency_key: str
    case_id: str
    # The case's own customer and currency (never from the SOP's expressions): billing
    # refuses a write for another customer or in another currency than the invoice's.
    case_customer_id: str | None = None
    case_currency: str | None = None


Call = Callable[[BillingSystem, BillingRequest], Awaitable[Any]]


def _decimal(req: BillingRequest, name: str) -> Decimal:
    return Decimal(str(req.args[name]))


def _date(req: BillingRequest, name: str) -> date:
    return date.fromisoformat(str(req.args[name])[:10])


def _as_of(req: BillingRequest) -> date:
    # Without `as_of`, today: the activity's result lands in history, so replays agree.
    return _date(req, "as_of") if req.args.get("as_of") else date.today()


def _installments(req: BillingRequest) -> list[Installment]:
    return [Installment.model_validate(i) for i in req.args["installments"]]


def _ids(req: BillingRequest) -> list[str]:
    return [str(i) for i in req.args["invoice_ids"]]


def _reason(req: BillingRequest) -> str:
    return str(req.args.get("reason") or "")


def _refusal(code: str, message: str) -> ApplicationError:
    """A business error found before calling billing: a person has to look, no retry."""
    error = {"code": code, "message": message, "status": 0}
    return ApplicationError(message, error, type=BUSINESS_ERROR, non_retryable=True)


def _own_customer(req: BillingRequest) -> str:
    """The SOP's `customer_id` for a customer write, refused unless it is the case's."""
    customer_id = str(req.args["customer_id"])
    if req.case_customer_id is not None and customer_id != req.case_customer_id:
        raise _refusal(
            "customer_mismatch",
            f"{req.action} for customer {customer_id!r} on a case of {req.case_customer_id!r}",
        )
    return customer_id


def _credit_memo(billing: BillingSystem, req: BillingRequest) -> Awaitable[Any]:
    if req.case_customer_id is None or req.case_currency is None:
        # Billing checks the invoice against the case's customer and currency; without them
        # there is nothing safe to check against, so no memo goes out.
        raise _refusal(
            "case_customer_unknown",
            "issue_credit_memo needs the case's customer and currency; this request has none",
        )
    return billing.issue_credit_memo(
        str(req.args["invoice_id"]),
        _decimal(req, "amount"),
        _reason(req),
        req.idempotency_key,
        customer_id=req.case_customer_id,
        currency=req.case_currency,
    )


def _open_dispute(billing: BillingSystem, req: BillingRequest) -> Awaitable[Any]:
    """The dispute is the case itself (its id), on the case's customer and currency: an SOP
    expression can neither open one for another customer nor under another case's name."""
    if req.case_customer_id is None or req.case_currency is None:
        raise _refusal(
            "case_customer_unknown",
            "open_dispute needs the case's customer and currency; this request has none",
        )
    return billing.open_dispute(
        req.case_id,
        _ids(req),
        _decimal(req, "amount"),
        _reason(req),
        req.idempotency_key,
        customer_id=req.case_customer_id,
        currency=req.case_currency,
    )


def _verify_case(billing: BillingSystem, req: BillingRequest) -> Awaitable[Customer]:
    """The intake check, run by the case when billing could not answer at intake."""
    region = str(req.args.get("region") or "") or None
    facts = CaseFacts(_own_customer(req), _ids(req), req.case_currency, region)
    return check_case(billing, facts, _as_of(req))


# One entry per `BillingAction` of the SOP schema (the one list of them).
ACTIONS: dict[BillingAction, Call] = {
    "open_dispute": _open_dispute,
    "record_dunning_notice": lambda b, r: b.record_dunning_notice(
        r.case_id, _own_customer(r), str(r.args["notice"]), r.idempotency_key
    ),
    "close_dispute": lambda b, r: b.close_dispute(
        r.case_id, str(r.args["outcome"]), r.idempotency_key
    ),
    "issue_credit_memo": _credit_memo,
    "set_credit_hold": lambda b, r: b.set_credit_hold(
        _own_customer(r), True, _reason(r), r.idempotency_key
    ),
    "release_credit_hold": lambda b, r: b.set_credit_hold(
        _own_customer(r), False, _reason(r), r.idempotency_key
    ),
    "update_credit_limit": lambda b, r: b.update_credit_limit(
        _own_customer(r), _decimal(r, "credit_limit"), r.idempotency_key
    ),
    "record_promise_to_pay": lambda b, r: b.record_promise_to_pay(
        _own_customer(r),
        _ids(r),
        _date(r, "promised_on"),
        _decimal(r, "amount"),
        r.idempotency_key,
    ),
    "record_payment_plan": lambda b, r: b.record_payment_plan(
        _own_customer(r), _ids(r), _installments(r), r.idempotency_key
    ),
    "get_exposure": lambda b, r: b.customer_exposure(str(r.args["customer_id"]), _as_of(r)),
    "get_customer": lambda b, r: b.customer(str(r.args["customer_id"])),
    "payment_status": lambda b, r: b.payment_status(_ids(r)),
    "verify_case": _verify_case,
}


class BillingActivities:
    """Holds the billing system the calls go to (the HTTP adapter to `billing_url`)."""

    def __init__(
        self, billing_url: str, billing: BillingSystem | None = None, token: str | SecretStr = ""
    ) -> None:
        self._url, self._token = billing_url, token
        self._billing = billing

    def _system(self) -> BillingSystem:
        if self._billing is None:
            self._billing = HttpBillingSystem(self._url, self._token)
        return self._billing

    @activity.defn(name=BILLING_CALL)
    async def billing_call(self, req: BillingRequest) -> dict[str, Any]:
        try:
            result = await ACTIONS[req.action](self._system(), req)
        except (KeyError, ValueError, ArithmeticError) as exc:
            # The SOP gave this call an argument it cannot use: a person has to look.
            raise _refusal("invalid_arguments", f"{req.action}: {exc!r}") from exc
        except BillingBusinessError as exc:
            error = {"code": exc.code, "message": exc.message, "status": exc.status}
            raise ApplicationError(
                exc.message, error, type=BUSINESS_ERROR, non_retryable=True
            ) from exc
        # Outages (BillingUnavailableError) propagate: Temporal retries them with backoff.
        return result.model_dump(mode="json") if isinstance(result, BaseModel) else {}
