"""HttpBillingSystem: the BillingSystem port over the REST contract (docs/billing-openapi.yaml).

4xx answers are business errors (`BillingBusinessError`, never retried); 5xx, 408, 429,
timeouts and refused connections are outages (`BillingUnavailableError`): the activity
fails and Temporal retries it with backoff, so the case waits for billing to come back.

An id that is not an id (`domain.values.ID_PATTERN`) is refused here, before any request, as
a business error: `INV-1/payments?` put into a path would call another operation. Each path
segment is quoted as well, so no value can ever leave its segment.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from billing.contract import (
    BillingBusinessError,
    BillingUnavailableError,
    CreditHold,
    CreditLimit,
    CreditMemo,
    Customer,
    CustomerStanding,
    Dispute,
    DunningNotice,
    Exposure,
    Installment,
    Invoice,
    Listing,
    MalformedRecord,
    OverdueCustomer,
    PaymentPlan,
    PaymentStatus,
    PromiseToPay,
    Receivables,
)
from domain.values import is_currency, is_id

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)
RETRYABLE_STATUSES = {408, 425, 429}
DEFAULT_TIMEOUT_S = 10.0


def _checked(field: str, value: str) -> str:
    if not is_id(value):
        raise BillingBusinessError(
            "invalid_id", f"{field} {value!r} is not an id; refused before calling billing", 422
        )
    return value


def _path(*segments: tuple[str, str] | str) -> str:
    """A path from literal segments and (field, id) pairs, each id checked and quoted."""
    parts = [s if isinstance(s, str) else quote(_checked(*s), safe="") for s in segments]
    return "/" + "/".join(parts)


def _ids(field: str, values: Iterable[str]) -> list[str]:
    return [_checked(field, v) for v in values]


class HttpBillingSystem:
    def __init__(
        self, base_url: str, token: str | SecretStr = "", timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        # Settings may hold the token as a SecretStr: its str() is a mask, never the token.
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, headers=headers
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        answer: type[T] | Any,
        *,
        key: str | None = None,
        body: BaseModel | dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> T:
        json = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
        headers = {"Idempotency-Key": key} if key else {}
        try:
            response = await self._client.request(
                method, path, json=json, params=params, headers=headers
            )
        except httpx.TransportError as exc:
            raise BillingUnavailableError(f"{method} {path}: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code in RETRYABLE_STATUSES:
            raise BillingUnavailableError(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise _business_error(response)
        return TypeAdapter(answer).validate_python(response.json())

    async def get_invoices(self, invoice_ids: list[str], as_of: date) -> list[Invoice]:
        params = {"id": _ids("invoice_ids", invoice_ids), "as_of": as_of.isoformat()}
        return await self._call("GET", "/invoices", list[Invoice], params=params)

    async def customer(self, customer_id: str) -> Customer:
        path = _path("customers", ("customer_id", customer_id))
        return await self._call("GET", path, Customer)

    async def customers(self, over_limit_only: bool = False) -> Listing[CustomerStanding]:
        params = {"over_limit": "true"} if over_limit_only else {}
        raw = await self._call("GET", "/customers", list[Any], params=params)
        return _listing(raw, CustomerStanding, "id")

    async def customer_exposure(self, customer_id: str, as_of: date) -> Exposure:
        params = {"as_of": as_of.isoformat()}
        path = _path("customers", ("customer_id", customer_id), "exposure")
        return await self._call("GET", path, Exposure, params=params)

    async def overdue_customers(self, as_of: date, min_days: int = 1) -> Listing[OverdueCustomer]:
        params = {"as_of": as_of.isoformat(), "min_days": min_days}
        raw = await self._call("GET", "/overdue", list[Any], params=params)
        return _listing(raw, OverdueCustomer, "customer_id")

    async def payment_status(self, invoice_ids: list[str]) -> PaymentStatus:
        params = {"id": _ids("invoice_ids", invoice_ids)}
        return await self._call("GET", "/payment-status", PaymentStatus, params=params)

    async def receivables(self, currency: str, start: date, end: date) -> Receivables:
        params = {"currency": currency, "start": start.isoformat(), "end": end.isoformat()}
        return await self._call("GET", "/receivables", Receivables, params=params)

    async def issue_credit_memo(
        self,
        invoice_id: str,
        amount: Decimal,
        reason: str,
        idempotency_key: str,
        *,
        customer_id: str,
        currency: str,
    ) -> CreditMemo:
        if not is_currency(currency):
            raise BillingBusinessError(
                "invalid_currency", f"currency {currency!r} is not an ISO 4217 code", 422
            )
        body = {
            "amount": str(amount),
            "reason": reason,
            "customer_id": _checked("customer_id", customer_id),
            "currency": currency,
        }
        path = _path("invoices", ("invoice_id", invoice_id), "credit-memos")
        return await self._call("POST", path, CreditMemo, key=idempotency_key, body=body)

    async def set_credit_hold(
        self, customer_id: str, on: bool, reason: str, idempotency_key: str
    ) -> CreditHold:
        body = {"on_hold": on, "reason": reason}
        path = _path("customers", ("customer_id", customer_id), "credit-hold")
        return await self._call("PUT", path, CreditHold, key=idempotency_key, body=body)

    async def update_credit_limit(
        self, customer_id: str, new_limit: Decimal, idempotency_key: str
    ) -> CreditLimit:
        body = {"credit_limit": str(new_limit)}
        path = _path("customers", ("customer_id", customer_id), "credit-limit")
        return await self._call("PUT", path, CreditLimit, key=idempotency_key, body=body)

    async def record_payment_plan(
        self,
        customer_id: str,
        invoice_ids: list[str],
        installments: list[Installment],
        idempotency_key: str,
    ) -> PaymentPlan:
        body = {
            "invoice_ids": _ids("invoice_ids", invoice_ids),
            "installments": [i.model_dump(mode="json") for i in installments],
        }
        path = _path("customers", ("customer_id", customer_id), "payment-plans")
        return await self._call("POST", path, PaymentPlan, key=idempotency_key, body=body)

    async def record_promise_to_pay(
        self,
        customer_id: str,
        invoice_ids: list[str],
        promised_on: date,
        amount: Decimal,
        idempotency_key: str,
    ) -> PromiseToPay:
        body = {
            "invoice_ids": _ids("invoice_ids", invoice_ids),
            "promised_on": promised_on.isoformat(),
            "amount": str(amount),
        }
        path = _path("customers", ("customer_id", customer_id), "promises-to-pay")
        return await self._call("POST", path, PromiseToPay, key=idempotency_key, body=body)

    async def open_dispute(
        self,
        dispute_id: str,
        invoice_ids: list[str],
        amount: Decimal,
        reason: str,
        idempotency_key: str,
        *,
        customer_id: str,
        currency: str,
    ) -> Dispute:
        if not is_currency(currency):
            raise BillingBusinessError(
                "invalid_currency", f"currency {currency!r} is not an ISO 4217 code", 422
            )
        body = {
            "customer_id": _checked("customer_id", customer_id),
            "currency": currency,
            "invoice_ids": _ids("invoice_ids", invoice_ids),
            "amount": str(amount),
            "reason": reason,
        }
        path = _path("disputes", ("dispute_id", dispute_id))
        return await self._call("PUT", path, Dispute, key=idempotency_key, body=body)

    async def close_dispute(self, dispute_id: str, outcome: str, idempotency_key: str) -> Dispute:
        path = _path("disputes", ("dispute_id", dispute_id), "close")
        body = {"outcome": outcome}
        return await self._call("POST", path, Dispute, key=idempotency_key, body=body)

    async def dispute(self, dispute_id: str) -> Dispute:
        return await self._call("GET", _path("disputes", ("dispute_id", dispute_id)), Dispute)

    async def record_dunning_notice(
        self, case_id: str, customer_id: str, notice: str, idempotency_key: str
    ) -> DunningNotice:
        body = {"case_id": _checked("case_id", case_id), "notice": notice}
        path = _path("customers", ("customer_id", customer_id), "dunning-notices")
        return await self._call("POST", path, DunningNotice, key=idempotency_key, body=body)


def _listing(raw: list[Any], model: type[R], id_field: str) -> Listing[R]:
    """Each record parsed on its own: a malformed one is set aside with its reason."""
    records: list[R] = []
    malformed: list[MalformedRecord] = []
    for item in raw:
        try:
            record = model.model_validate(item)
            problem = _unusable(record.model_dump(), id_field)
        except ValidationError as exc:
            problem = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors()
            )
        if problem is None:
            records.append(record)
        else:
            given = item.get(id_field, "") if isinstance(item, dict) else ""
            malformed.append(MalformedRecord(customer_id=str(given)[:128], reason=problem))
    return Listing(records=records, malformed=malformed)


def _unusable(values: dict[str, Any], id_field: str) -> str | None:
    """Why a well-shaped record still cannot open a case (its ids go into URLs and workflow
    ids, its currency onto money), or None."""
    if not is_id(values[id_field]):
        return f"{id_field}: {values[id_field]!r} is not a valid id"
    invoice_ids = values.get("invoice_ids")
    if invoice_ids is not None:
        # An overdue line whose every invoice is in dispute names them under `disputed`.
        if not invoice_ids and not values.get("disputed"):
            return "invoice_ids: no invoice given"
        bad = next((i for i in invoice_ids if not is_id(i)), None)
        if bad is not None:
            return f"invoice_ids: {bad!r} is not a valid id"
    if not is_currency(values["currency"]):
        return f"currency: {values['currency']!r} is not an ISO 4217 code"
    return None


def _business_error(response: httpx.Response) -> BillingBusinessError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{response.status_code}", response.text[:500]
    return BillingBusinessError(code, message, response.status_code)
