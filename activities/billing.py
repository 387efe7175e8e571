"""The billing activity: one SOP billing step, through the BillingSystem port, exactly once.

Every mutating call carries the idempotency key the case derived for this step, so a
retried activity never issues a second credit memo. Refusals (4xx) are business errors:
not retried, they come back to the case, which hands them to a person.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

if TYPE_CHECKING:
    from billing.contract import BillingSystem

BILLING_CALL = "billing_call"
BUSINESS_ERROR = "BillingBusinessError"


class BillingRequest(BaseModel):
    action: str
    args: dict[str, Any]
    idempotency_key: str
    case_id: str


Call = Callable[["BillingSystem", BillingRequest], Awaitable[Any]]

ACTIONS: dict[str, Call] = {
    "issue_credit_memo": lambda b, r: b.issue_credit_memo(
        r.args["invoice_id"], Decimal(str(r.args["amount"])), str(r.args.get("reason", "")),
        r.idempotency_key,
    ),
    "set_credit_hold": lambda b, r: b.set_credit_hold(
        r.args["customer_id"], True, str(r.args.get("reason", "")), r.idempotency_key
    ),
    "release_credit_hold": lambda b, r: b.set_credit_hold(
        r.args["customer_id"], False, str(r.args.get("reason", "")), r.idempotency_key
    ),
    "update_credit_limit": lambda b, r: b.update_credit_limit(
        r.args["customer_id"], Decimal(str(r.args["credit_limit"])), r.idempotency_key
    ),
    # Without `as_of`, today: the activity's result lands in history, so replays agree.
    "get_exposure": lambda b, r: b.customer_exposure(
        r.args["customer_id"],
        date.fromisoformat(str(r.args["as_of"])) if r.args.get("as_of") else date.today(),
    ),
}  # fmt: skip


class BillingActivities:
    """Holds the billing system the calls go to (the HTTP adapter to `billing_url`)."""

    def __init__(self, billing_url: str, billing: BillingSystem | None = None) -> None:
        self._url = billing_url
        self._billing = billing

    def _system(self) -> BillingSystem:
        if self._billing is None:
            from billing.http_adapter import HttpBillingSystem

            self._billing = HttpBillingSystem(self._url)
        return self._billing

    @activity.defn(name=BILLING_CALL)
    async def billing_call(self, req: BillingRequest) -> dict[str, Any]:
        from billing.contract import BillingBusinessError

        try:
            result = await ACTIONS[req.action](self._system(), req)
        except BillingBusinessError as exc:
            error = {"code": exc.code, "message": exc.message, "status": exc.status}
            raise ApplicationError(exc.message, error, type=BUSINESS_ERROR,
                                   non_retryable=True) from exc  # fmt: skip
        # Outages (BillingUnavailableError) propagate: Temporal retries them with backoff.
        return result.model_dump(mode="json") if isinstance(result, BaseModel) else {}
