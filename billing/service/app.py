"""The billing REST contract, served over the ledger (docs/billing-openapi.yaml is its spec).

Errors are `{"error": {"code", "message"}}`: 401 without the bearer token, 404 for unknown
customers, invoices and paths, 409 for a closed invoice, 422 for a request the ledger refuses
(an id outside the id pattern, a field the operation does not take, a credit memo for an
invoice of another customer `invoice_not_of_customer` or in another currency
`currency_mismatch`), 400 without an idempotency key on a write. Every write needs an
`Idempotency-Key` header; repeating it repeats the first answer.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from billing.contract import (
    BillingBusinessError,
    CreditHold,
    CreditLimit,
    CreditMemo,
    Customer,
    CustomerStanding,
    Exposure,
    Installment,
    Invoice,
    OverdueCustomer,
    PaymentPlan,
    PaymentStatus,
    PromiseToPay,
)
from billing.service import ledger
from billing.service.idempotency import once
from domain.values import ID_PATTERN, is_currency

# Ids in paths, bodies and queries: the one pattern, so no id can change a URL or a log.
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
PathId = Annotated[str, Path(pattern=ID_PATTERN)]
# Enough for any case's invoices; a bound keeps one request from scanning the whole ledger.
MAX_IDS = 100
Ids = Annotated[list[Id], Field(min_length=1, max_length=MAX_IDS)]
QueryIds = Annotated[list[Id], Query(alias="id", min_length=1, max_length=MAX_IDS)]


def _iso_4217(code: str) -> str:
    if not is_currency(code):
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), AfterValidator(_iso_4217)]

IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key")]
AsOf = Annotated[date | None, Query(description="Day the ages are counted to; default today")]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class StrictBody(BaseModel):
    """A request body takes exactly its own fields: a body sent to the wrong route is refused."""

    model_config = ConfigDict(extra="forbid")


class CreditMemoRequest(StrictBody):
    amount: Decimal = Field(gt=0)
    reason: str = Field("", max_length=500)
    customer_id: Id = Field(description="The case's customer: the invoice must be theirs")
    currency: Currency = Field(description="The case's currency: the invoice must be in it")


class CreditHoldRequest(StrictBody):
    on_hold: bool
    reason: str = Field("", max_length=500)


class CreditLimitRequest(StrictBody):
    credit_limit: Decimal = Field(ge=0)


class PaymentPlanRequest(StrictBody):
    invoice_ids: Ids
    installments: Annotated[list[Installment], Field(min_length=1, max_length=MAX_IDS)]


class PromiseToPayRequest(StrictBody):
    invoice_ids: Ids
    promised_on: date
    amount: Decimal = Field(gt=0)


class PaymentRequest(StrictBody):
    amount: Decimal = Field(gt=0)
    received_on: date | None = None
    reference: str = Field("", max_length=200)


class InvoiceLoad(StrictBody):
    customer_id: Id
    issued_on: date
    due_on: date
    amount: Decimal = Field(gt=0)
    open_balance: Decimal | None = None


class CustomerLoad(StrictBody):
    name: str = Field(max_length=200)
    email: str = Field("", max_length=200, description="the customer's contact address")
    currency: Currency
    credit_limit: Decimal = Field(ge=0)
    region: str = Field("", max_length=16, description="its business calendar, e.g. SG")
    time_zone: str = Field("", max_length=64, description="IANA zone, e.g. Asia/Singapore")
    language: str = Field("", max_length=35, description="BCP 47 tag, e.g. fr")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 422)
}


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _today(as_of: date | None) -> date:
    return as_of or datetime.now(UTC).date()


def create_app(engine: Engine, token: str, *, insecure_no_token: bool = False) -> FastAPI:
    """The service: every call but /healthz needs `Authorization: Bearer <token>`.

    Without a token it refuses to exist unless `insecure_no_token` says this is a dev run:
    an open ledger on a reachable port would let anyone issue credit memos.
    """
    if not token and not insecure_no_token:
        raise ValueError("the billing service needs a token (or insecure_no_token for dev runs)")
    app = FastAPI(
        title="Casebook billing contract",
        version="1.0.0",
        description=__doc__,
        responses=ERRORS,
    )

    @app.middleware("http")
    async def _authenticate(request: Request, call_next: Any) -> Any:
        given = request.headers.get("Authorization", "")
        if token and request.url.path != "/healthz" and not _same(given, f"Bearer {token}"):
            body = {"error": {"code": "unauthorized", "message": "a valid bearer token is needed"}}
            return JSONResponse(body, status_code=401)
        return await call_next(request)

    @app.exception_handler(BillingBusinessError)
    async def _business(_: Request, exc: BillingBusinessError) -> JSONResponse:
        body = {"error": {"code": exc.code, "message": exc.message}}
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        # Unknown paths (a quoted `/` in an id lands here) and FastAPI's own refusals (a body
        # it cannot parse: 400) answer in the contract's error shape.
        codes = {404: "not_found", 400: "bad_request"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        body = {"error": {"code": code, "message": str(exc.detail)}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        body = {"error": {"code": "invalid_request", "message": problems}}
        return JSONResponse(body, status_code=422)

    def read(fn: Callable[[Session], Any]) -> Any:
        with Session(engine) as session:
            return fn(session)

    def write(
        key: str,
        operation: str,
        subject: dict[str, str],
        body: BaseModel,
        fn: Callable[[Session], Any],
    ) -> Any:
        """An idempotent write; its request is the path's ids plus the body."""
        request = {**subject, **body.model_dump(mode="json")}
        return once(engine, key, operation, request, fn)

    def load(fn: Callable[[Session], Any]) -> Any:
        with Session(engine) as session:
            result = fn(session)
            session.commit()
            return result

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/customers")
    def get_customers(
        over_limit: Annotated[bool, Query(description="only those above their limit")] = False,
    ) -> list[CustomerStanding]:
        return read(lambda s: ledger.customers(s, over_limit))

    @app.get("/customers/{customer_id}")
    def get_customer(customer_id: PathId) -> Customer:
        return read(lambda s: ledger.customer(s, customer_id))

    @app.put("/customers/{customer_id}", tags=["loading"])
    def put_customer(customer_id: PathId, body: CustomerLoad) -> Customer:
        value = Customer(id=customer_id, **body.model_dump())
        return load(lambda s: ledger.put_customer(s, value))

    @app.get("/customers/{customer_id}/open-items")
    def get_open_items(customer_id: PathId, as_of: AsOf = None) -> list[Invoice]:
        return read(lambda s: ledger.open_items(s, customer_id, _today(as_of)))

    @app.get("/customers/{customer_id}/exposure")
    def get_exposure(customer_id: PathId, as_of: AsOf = None) -> Exposure:
        return read(lambda s: ledger.exposure(s, customer_id, _today(as_of)))

    @app.put("/customers/{customer_id}/credit-hold")
    def put_credit_hold(
        customer_id: PathId, body: CreditHoldRequest, key: IdempotencyKey = ""
    ) -> CreditHold:
        return write(
            key,
            "credit_hold",
            {"customer_id": customer_id},
            body,
            lambda s: ledger.set_credit_hold(s, customer_id, body.on_hold, body.reason),
        )

    @app.put("/customers/{customer_id}/credit-limit")
    def put_credit_limit(
        customer_id: PathId, body: CreditLimitRequest, key: IdempotencyKey = ""
    ) -> CreditLimit:
        return write(
            key,
            "credit_limit",
            {"customer_id": customer_id},
            body,
            lambda s: ledger.update_credit_limit(s, customer_id, body.credit_limit),
        )

    @app.post("/customers/{customer_id}/payment-plans", status_code=201)
    def post_payment_plan(
        customer_id: PathId, body: PaymentPlanRequest, key: IdempotencyKey = ""
    ) -> PaymentPlan:
        now = datetime.now(UTC)
        return write(
            key,
            "payment_plan",
            {"customer_id": customer_id},
            body,
            lambda s: ledger.record_payment_plan(
                s, customer_id, body.invoice_ids, body.installments, now
            ),
        )

    @app.post("/customers/{customer_id}/promises-to-pay", status_code=201)
    def post_promise_to_pay(
        customer_id: PathId, body: PromiseToPayRequest, key: IdempotencyKey = ""
    ) -> PromiseToPay:
        now = datetime.now(UTC)
        return write(
            key,
            "promise_to_pay",
            {"customer_id": customer_id},
            body,
            lambda s: ledger.record_promise_to_pay(
                s, customer_id, body.invoice_ids, body.promised_on, body.amount, now
            ),
        )

    @app.get("/invoices")
    def get_invoices(invoice_id: QueryIds, as_of: AsOf = None) -> list[Invoice]:
        return read(lambda s: ledger.invoices(s, invoice_id, _today(as_of)))

    @app.get("/invoices/{invoice_id}")
    def get_invoice(invoice_id: PathId, as_of: AsOf = None) -> Invoice:
        return read(lambda s: ledger.invoices(s, [invoice_id], _today(as_of))[0])

    @app.put("/invoices/{invoice_id}", tags=["loading"])
    def put_invoice(invoice_id: PathId, body: InvoiceLoad) -> Invoice:
        return load(lambda s: ledger.put_invoice(s, invoice_id, **body.model_dump()))

    @app.post("/invoices/{invoice_id}/credit-memos", status_code=201)
    def post_credit_memo(
        invoice_id: PathId, body: CreditMemoRequest, key: IdempotencyKey = ""
    ) -> CreditMemo:
        now = datetime.now(UTC)
        return write(
            key,
            "credit_memo",
            {"invoice_id": invoice_id},
            body,
            lambda s: ledger.issue_credit_memo(
                s, invoice_id, body.amount, body.reason, now, body.customer_id, body.currency
            ),
        )

    @app.post("/invoices/{invoice_id}/payments", status_code=201, tags=["loading"])
    def post_payment(invoice_id: PathId, body: PaymentRequest, key: IdempotencyKey = "") -> Invoice:
        received = _today(body.received_on)
        return write(
            key,
            "payment",
            {"invoice_id": invoice_id},
            body,
            lambda s: ledger.record_payment(s, invoice_id, body.amount, received, body.reference),
        )

    @app.get("/payment-status")
    def get_payment_status(
        invoice_id: QueryIds,
    ) -> PaymentStatus:
        return read(lambda s: ledger.payment_status(s, invoice_id))

    @app.get("/overdue")
    def get_overdue(
        as_of: AsOf = None, min_days: Annotated[int, Query(ge=0)] = 1
    ) -> list[OverdueCustomer]:
        return read(lambda s: ledger.overdue_customers(s, _today(as_of), min_days))

    _document_bearer(app)
    return app


def _document_bearer(app: FastAPI) -> None:
    """Say in the spec what the middleware enforces: a bearer token everywhere but /healthz."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            schemes = spec.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["bearer"] = {"type": "http", "scheme": "bearer"}
            spec["security"] = [{"bearer": []}]
            for operation in spec["paths"].get("/healthz", {}).values():
                operation["security"] = []
                operation["responses"].pop("401", None)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
