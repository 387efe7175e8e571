"""Schemathesis over the product's OpenAPI and the billing contract: no 5xx, and every
answer is one the spec documents (status, content type, body schema, headers).

The product API runs in-process on the real Temporal dev server and a real database (the
`api` fixture); requests go through the harness's ASGI client on the test's event loop,
while Hypothesis generates them in a thread. Each operation is tried with a token of every
role. `CASEBOOK_FUZZ_EXAMPLES` sets the examples per operation, role and mode (default 2;
see README, "Fuzzing").
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from domain.case_models import Role
from store.tables import CaseRow
from tests.billing_harness import BillingService, put_shared_book
from tests.harness import Api, running_api, terminate_cases

EXAMPLES = int(os.environ.get("CASEBOOK_FUZZ_EXAMPLES", "2"))
BILLING_SPEC = Path(__file__).parent.parent / "docs" / "billing-openapi.yaml"
BASE_URL = "http://casebook"
REPORT_CHARS = 2000
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# A schema-invalid request must be refused: the schema is as strict as the server.
CHECKS = {
    GenerationMode.POSITIVE: CONFORMANCE,
    GenerationMode.NEGATIVE: [*CONFORMANCE, negative_data_rejection],
}

Send = Callable[[Case, dict[str, str]], httpx.Response]


def _operations(schema: BaseSchema) -> Iterator[APIOperation]:
    # Unknown query parameters are ignored, as HTTP APIs do: not a violation to look for.
    # The tokens are ours (one per role), so the fuzzer must not make up or "negate" the
    # Authorization header: its negation would be replaced by a valid token and pass.
    schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    for result in schema.get_all_operations():
        yield result.ok()


def _fuzz(
    operation: APIOperation, mode: GenerationMode, headers: dict[str, str], send: Send
) -> None:
    """Up to EXAMPLES requests for `operation`; the first nonconforming answer fails."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        # No shrinking: the failure names the request as curl, which is what a reader needs.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        response = send(case, headers)
        case.validate_response(response, checks=CHECKS[mode], headers=headers)

    run()


def _fuzz_all(schema: BaseSchema, tokens: dict[str, dict[str, str]], send: Send) -> list[str]:
    """Every operation, role and mode; the failures as readable reports."""
    failures = []
    for operation in _operations(schema):
        for role, headers in tokens.items():
            for mode in CHECKS:
                try:
                    _fuzz(operation, mode, headers, send)
                except Unsatisfiable:
                    pass  # nothing in this operation can be sent invalid (e.g. no parameters)
                # A check's failures come as a group; an error sending, as itself.
                except (Exception, BaseExceptionGroup) as exc:
                    report = str(exc)[:REPORT_CHARS]
                    failures.append(f"{operation.label} as {role} ({mode.value}): {report}")
    return failures


def _httpx_kwargs(case: Case, headers: dict[str, str], base_url: str) -> dict[str, Any]:
    """The request Schemathesis would send, as arguments to an httpx client."""
    sent = case.as_transport_kwargs(base_url=base_url, headers=headers)
    kwargs = {k: sent[k] for k in ("method", "url", "headers", "params", "cookies") if sent.get(k)}
    if "json" in sent:
        kwargs["json"] = sent["json"]
    elif sent.get("data") is not None:
        kwargs["content"] = sent["data"]
    return kwargs


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BillingService]:
    """A ledger of the fuzz run's own, with customers no other run has: the sweeps it fuzzes
    open cases under ids derived from customer and period, which must not be cases another
    test module opened (their workers are gone)."""
    database = tmp_path_factory.mktemp("fuzz-book") / "ledger.db"
    with BillingService(f"sqlite:///{database}") as service:
        today = date.today()
        for n in range(2):
            customer = f"FUZZ-{uuid.uuid4().hex[:8]}"
            service.put_customer(customer, limit="100.00")
            service.put_invoice(f"{customer}-I{n}", customer, "500.00", today, today)
        yield service


@pytest_asyncio.fixture(loop_scope="session")
async def fuzzed_api(
    dev_server: WorkflowEnvironment, engine: Engine, book: BillingService
) -> AsyncIterator[Api]:
    async with running_api(dev_server.client, engine, billing_url=book.url) as api:
        yield api
        with Session(engine) as session:
            opened = list(session.exec(select(CaseRow.id)).all())
        await terminate_cases(dev_server.client, opened)


@pytest.mark.asyncio(loop_scope="session")
async def test_product_api_answers_only_what_its_openapi_documents(fuzzed_api: Api) -> None:
    """The whole product API, with a token of each role."""
    api = fuzzed_api
    spec = (await api.http.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(spec)
    # Something to find: a case with an open task, so lists and reads have real rows.
    agent = api.user("agent", queues=["disputes-tier1"], vendor="acme")
    await api.open_dispute(agent, customer_id=f"CUST-{uuid.uuid4().hex[:6]}")
    tokens = {
        "agent": agent,
        "lead": api.user("lead", queues=["disputes-tier1", "disputes-tier2"]),
        **{role: api.user(role) for role in ("sop_owner", "auditor", "admin", "system")},
    }
    assert set(tokens) == {r.value for r in Role}
    loop = asyncio.get_running_loop()

    def send(case: Case, headers: dict[str, str]) -> httpx.Response:
        request = api.http.request(**_httpx_kwargs(case, headers, BASE_URL))
        return asyncio.run_coroutine_threadsafe(request, loop).result(timeout=120)

    failures = await asyncio.to_thread(_fuzz_all, schema, tokens, send)
    assert not failures, "\n\n".join(failures)


@pytest.fixture(scope="module")
def billing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BillingService]:
    """A ledger of its own: the fuzzer's writes must not move other tests' balances."""
    database = tmp_path_factory.mktemp("fuzz-billing") / "ledger.db"
    with BillingService(f"sqlite:///{database}") as service:
        put_shared_book(service, date.today())
        yield service


def test_billing_service_answers_only_what_its_contract_documents(
    billing: BillingService,
) -> None:
    """The built-in billing service over real HTTP, against docs/billing-openapi.yaml."""
    schema = schemathesis.openapi.from_dict(yaml.safe_load(BILLING_SPEC.read_text()))
    auth = {"Authorization": f"Bearer {billing.token}"} if billing.token else {}

    def send(case: Case, headers: dict[str, str]) -> httpx.Response:
        return httpx.request(**_httpx_kwargs(case, headers, billing.url), timeout=30)

    failures = _fuzz_all(schema, {"billing client": auth}, send)
    assert not failures, "\n\n".join(failures)


# What the fuzzer found in the billing service, as plain tests.


def test_billing_answers_an_unreadable_body_in_its_error_shape(billing: BillingService) -> None:
    response = httpx.put(
        f"{billing.url}/customers/C-UNREADABLE",
        content=b"\xff\xfe{",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]) == {"code", "message"}


def test_billing_refuses_an_amount_past_15_digits(billing: BillingService) -> None:
    body = {"name": "Huge", "email": "ap@huge.example", "currency": "EUR"}
    response = httpx.put(
        f"{billing.url}/customers/C-HUGE", json={**body, "credit_limit": "1" + "0" * 30}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_amount"
    assert httpx.get(f"{billing.url}/customers/C-HUGE").status_code == 404


def test_billing_overdue_before_year_one_is_nothing(billing: BillingService) -> None:
    response = httpx.get(
        f"{billing.url}/overdue", params={"as_of": "0020-07-17", "min_days": 10**6}
    )
    assert response.status_code == 200, response.text
    assert response.json() == []
