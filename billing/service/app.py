"""The billing REST contract, served over the ledger (docs/billing-openapi.yaml is its spec).

Errors are `{"error": {"code", "message"}}`: 404 for unknown customers and invoices, 409 for
a closed invoice, 422 for a request the ledger refuses, 400 without an idempotency key on a
write. Every write needs an `Idempotency-Key` header; repeating it repeats the first answer.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

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

IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key")]
AsOf = Annotated[date | None, Query(description="Day the ages are counted to; default today")]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class CreditMemoRequest(BaseModel):
    amount: Decimal = Field(gt=0)
    reason: str = ""


class CreditHoldRequest(BaseModel):
    on_hold: bool
    reason: str = ""


class CreditLimitRequest(BaseModel):
    credit_limit: Decimal = Field(ge=0)


class PaymentPlanRequest(BaseModel):
    invoice_ids: list[str]
    installments: list[Installment]


class PromiseToPayRequest(BaseModel):
    invoice_ids: list[str]
    promised_on: date
    amount: Decimal = Field(gt=0)


class PaymentRequest(BaseModel):
    amount: Decimal = Field(gt=0)
    received_on: date | None = None
    reference: str = ""


class InvoiceLoad(BaseModel):
    customer_id: str
    issued_on: date
    due_on: date
    amount: Decimal = Field(gt=0)
    open_balance: Decimal | None = None


class CustomerLoad(BaseModel):
    name: str
    email: str = ""
    currency: str = Field(min_length=3, max_length=3)
    credit_limit: Decimal = Field(ge=0)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 409, 422)
}


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _today(as_of: date | None) -> date:
    return as_of or datetime.now(UTC).date()


def create_app(engine: Engine, token: str = "") -> FastAPI:
    """The service; with `token`, every call but /healthz needs `Authorization: Bearer`."""
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

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (a body it cannot parse: 400) in the contract's error shape.
        body = {"error": {"code": "bad_request", "message": str(exc.detail)}}
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
    def get_customer(customer_id: str) -> Customer:
        return read(lambda s: ledger.customer(s, customer_id))

    @app.put("/customers/{customer_id}", tags=["loading"])
    def put_customer(customer_id: str, body: CustomerLoad) -> Customer:
        value = Customer(id=customer_id, **body.model_dump())
        return load(lambda s: ledger.put_customer(s, value))

    @app.get("/customers/{customer_id}/open-items")
    def get_open_items(customer_id: str, as_of: AsOf = None) -> list[Invoice]:
        return read(lambda s: ledger.open_items(s, customer_id, _today(as_of)))

    @app.get("/customers/{customer_id}/exposure")
    def get_exposure(customer_id: str, as_of: AsOf = None) -> Exposure:
        return read(lambda s: ledger.exposure(s, customer_id, _today(as_of)))

    @app.put("/customers/{customer_id}/credit-hold")
    def put_credit_hold(
        customer_id: str, body: CreditHoldRequest, key: IdempotencyKey = ""
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
        customer_id: str, body: CreditLimitRequest, key: IdempotencyKey = ""
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
        customer_id: str, body: PaymentPlanRequest, key: IdempotencyKey = ""
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
        customer_id: str, body: PromiseToPayRequest, key: IdempotencyKey = ""
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
    def get_invoices(
        invoice_id: Annotated[list[str], Query(alias="id", min_length=1)], as_of: AsOf = None
    ) -> list[Invoice]:
        return read(lambda s: ledger.invoices(s, invoice_id, _today(as_of)))

    @app.get("/invoices/{invoice_id}")
    def get_invoice(invoice_id: str, as_of: AsOf = None) -> Invoice:
        return read(lambda s: ledger.invoices(s, [invoice_id], _today(as_of))[0])

    @app.put("/invoices/{invoice_id}", tags=["loading"])
    def put_invoice(invoice_id: str, body: InvoiceLoad) -> Invoice:
        return load(lambda s: ledger.put_invoice(s, invoice_id, **body.model_dump()))

    @app.post("/invoices/{invoice_id}/credit-memos", status_code=201)
    def post_credit_memo(
        invoice_id: str, body: CreditMemoRequest, key: IdempotencyKey = ""
    ) -> CreditMemo:
        now = datetime.now(UTC)
        return write(
            key,
            "credit_memo",
            {"invoice_id": invoice_id},
            body,
            lambda s: ledger.issue_credit_memo(s, invoice_id, body.amount, body.reason, now),
        )

    @app.post("/invoices/{invoice_id}/payments", status_code=201, tags=["loading"])
    def post_payment(invoice_id: str, body: PaymentRequest, key: IdempotencyKey = "") -> Invoice:
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
        invoice_id: Annotated[list[str], Query(alias="id", min_length=1)],
    ) -> PaymentStatus:
        return read(lambda s: ledger.payment_status(s, invoice_id))

    @app.get("/overdue")
    def get_overdue(
        as_of: AsOf = None, min_days: Annotated[int, Query(ge=0)] = 1
    ) -> list[OverdueCustomer]:
        return read(lambda s: ledger.overdue_customers(s, _today(as_of), min_days))

    return app
