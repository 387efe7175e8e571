"""Inputs the security review found harmful are refused at the door (422 naming the field,
413 for an oversized body) and change nothing: no case started, no task touched."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlmodel import Session, select

from api.schemas import DATA_MAX_BYTES, DATA_MAX_DEPTH, REQUEST_MAX_BYTES
from store.tables import CaseRow
from tests.harness import DISPUTE, Api, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIER1 = "disputes-tier1"


def _nested(depth: int) -> dict[str, Any]:
    data: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        data = {"x": data}
    return data


def _cases_of(api: Api, customer: str) -> list[CaseRow]:
    with Session(api.engine) as session:
        return list(session.exec(select(CaseRow).where(CaseRow.customer_id == customer)).all())


def _assert_invalid(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid"
    assert field in body["message"], body
    # Schema checks list every field; a check against the case names its one field.
    named = [f["field"].split(".")[0] for f in body["details"].get("fields", [])]
    assert field in [*named, body["details"].get("field")], body


async def _refused_intake(api: Api, change: dict[str, Any], field: str) -> None:
    agent = api.user("agent", queues=[TIER1])
    customer = f"CUST-{uuid.uuid4().hex[:6]}"
    body = {**DISPUTE, "customer_id": customer, **change}
    _assert_invalid(await api.http.post("/cases", json=body, headers=agent), field)
    assert _cases_of(api, customer) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"data": _nested(250)}, "data"),
        ({"data": _nested(DATA_MAX_DEPTH + 1)}, "data"),
        ({"data": {"blob": "x" * DATA_MAX_BYTES}}, "data"),
        ({"amount": "\u0661\u0662\u0663\u0664.\u0665\u0660"}, "amount"),  # Arabic-Indic
        ({"amount": "\uff11\uff12"}, "amount"),  # fullwidth digits
        ({"amount": 1250}, "amount"),  # a JSON number: the schema says a decimal string
        ({"currency": "usd"}, "currency"),
        ({"currency": "XYZ"}, "currency"),  # three capitals, but not an ISO 4217 code
        ({"region": "ZZ"}, "region"),
        ({"customer_id": "CUST/../1"}, "customer_id"),
        ({"invoice_ids": ["INV-1/payments?"]}, "invoice_ids"),
        ({"invoice_ids": [f"INV-{i}" for i in range(1000)]}, "invoice_ids"),
        ({"vendor": "acme corp"}, "vendor"),
        ({"vendr": "acme"}, "vendr"),  # misspelt: ignoring it would open a vendor-less case
        ({"data": {"note": "a\u0000b"}}, "data"),  # PostgreSQL cannot store a NUL
        ({"reason_code": "pricing\u0000"}, "reason_code"),
    ],
)
async def test_harmful_intake_is_refused_and_starts_nothing(
    api: Api, change: dict[str, Any], field: str
) -> None:
    await _refused_intake(api, change, field)


async def test_data_at_the_caps_is_accepted(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    case = await api.open_dispute(agent, data={"deep": _nested(DATA_MAX_DEPTH - 1)})
    assert case["data"]["deep"] == _nested(DATA_MAX_DEPTH - 1)


@pytest.mark.parametrize("path", ["/cases", "/escalations", "/tasks"])
@pytest.mark.parametrize("params", [{"offset": 2**70}, {"offset": -1}, {"limit": 2**64}])
async def test_list_bounds_answer_422_naming_the_parameter(
    api: Api, path: str, params: dict[str, int]
) -> None:
    lead = api.user("lead", queues=[TIER1])
    _assert_invalid(await api.http.get(path, params=params, headers=lead), next(iter(params)))


async def _claimed_task(api: Api) -> tuple[dict[str, str], dict[str, Any]]:
    agent = api.user("agent", queues=[TIER1])
    case = await api.open_dispute(agent, customer_id=f"CUST-{uuid.uuid4().hex[:6]}")

    async def probe() -> list[dict[str, Any]]:
        params = {"case_id": case["id"], "status": "open"}
        return (await api.http.get("/tasks", params=params, headers=agent)).json()

    tasks = await eventually(probe, bool)
    claimed = await api.http.post(f"/tasks/{tasks[0]['id']}/claim", headers=agent)
    assert claimed.status_code == 200, claimed.text
    return agent, claimed.json()


async def _task_now(api: Api, headers: dict[str, str], task: dict[str, Any]) -> dict[str, Any]:
    case = (await api.http.get(f"/cases/{task['case_id']}", headers=headers)).json()
    return next(t for t in case["tasks"] if t["id"] == task["id"])


@pytest.mark.parametrize(
    "data",
    [_nested(250), _nested(DATA_MAX_DEPTH + 1), {"blob": "x" * DATA_MAX_BYTES}, {"\u0000": 1}],
)
async def test_harmful_completion_data_is_refused_and_the_task_is_unchanged(
    api: Api, data: dict[str, Any]
) -> None:
    agent, task = await _claimed_task(api)
    body = {"outcome": task["allowed_outcomes"][0], "data": data}
    response = await api.http.post(f"/tasks/{task['id']}/complete", json=body, headers=agent)
    _assert_invalid(response, "data")
    after = await _task_now(api, agent, task)
    assert after["status"] == "claimed" and after["data"] == {}


@pytest.mark.parametrize(
    "until", ["2030-01-01T09:00:00", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+05:00"]
)
async def test_a_pause_until_naive_or_out_of_range_is_refused(api: Api, until: str) -> None:
    agent, task = await _claimed_task(api)
    body = {"reason": "awaiting_customer", "until": until}
    response = await api.http.post(f"/tasks/{task['id']}/pause", json=body, headers=agent)
    _assert_invalid(response, "until")
    after = await _task_now(api, agent, task)
    assert after["sla_paused"] is False and after["paused_until"] is None


@pytest.mark.parametrize(
    "as_of", [str(2**70), "99999999", "2026-01-01T00:00:00", "\u0663", "0001-01-01T00:00:00+05:00"]
)
async def test_state_as_of_out_of_range_answers_422(api: Api, as_of: str) -> None:
    agent = api.user("agent", queues=[TIER1])
    case = await api.open_dispute(agent)
    auditor = api.user("auditor")
    response = await api.http.get(
        f"/cases/{case['id']}/state", params={"as_of": as_of}, headers=auditor
    )
    _assert_invalid(response, "as_of")


async def test_a_sweep_for_an_unknown_region_is_refused(api: Api) -> None:
    lead = api.user("lead")
    response = await api.http.post("/collections/overdue-scan", json={"region": "ZZ"}, headers=lead)
    _assert_invalid(response, "region")


async def test_a_body_over_the_cap_answers_413_and_starts_nothing(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    customer = f"CUST-{uuid.uuid4().hex[:6]}"
    padding = "x" * REQUEST_MAX_BYTES
    body = {**DISPUTE, "customer_id": customer, "reason_code": padding}
    response = await api.http.post("/cases", json=body, headers=agent)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "too_large"
    assert _cases_of(api, customer) == []


async def test_a_streamed_body_over_the_cap_answers_413(api: Api) -> None:
    """No Content-Length to trust: the cap counts what arrives."""
    agent = api.user("agent", queues=[TIER1])

    async def chunks() -> Any:
        for _ in range(REQUEST_MAX_BYTES // 65536 + 2):
            yield b" " * 65536

    response = await api.http.post(
        "/cases", content=chunks(), headers={**agent, "Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "too_large"


async def test_openapi_tells_the_checks(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    create = spec["components"]["schemas"]["CaseCreate"]["properties"]
    assert create["amount"]["pattern"] == "^[0-9]{1,15}(\\.[0-9]{1,4})?$"
    # Region and currency may be left out (billing's master data fills them in).
    region, currency = (create[f]["anyOf"][0]["enum"] for f in ("region", "currency"))
    assert "US" in region and "ZZ" not in region
    assert "USD" in currency and "XYZ" not in currency
    assert create["customer_id"]["pattern"].startswith("^[A-Za-z0-9]")
    sop_body = spec["paths"]["/sops/{name}/versions"]["post"]["requestBody"]
    assert "steps" in str(sop_body) or "$ref" in str(sop_body)
    for path, operations in spec["paths"].items():
        if path == "/healthz":
            continue
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"401", "403", "404", "413", "422", "504"} <= codes, (method, path)
            assert operation["responses"]["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorOut"
            }
    error = spec["components"]["schemas"]["ErrorOut"]
    assert set(error["required"]) == {"error", "message"}


async def test_a_note_with_nul_is_refused_and_the_task_is_unchanged(api: Api) -> None:
    agent, task = await _claimed_task(api)
    body = {"outcome": task["allowed_outcomes"][0], "note": "called\u0000"}
    response = await api.http.post(f"/tasks/{task['id']}/complete", json=body, headers=agent)
    _assert_invalid(response, "note")
    assert (await _task_now(api, agent, task))["status"] == "claimed"


async def test_an_sop_draft_with_nul_is_refused_and_stores_nothing(api: Api) -> None:
    owner = api.user("sop_owner")
    listed = (await api.http.get("/sops/dispute/versions", headers=owner)).json()
    document = (
        await api.http.get(f"/sops/dispute/versions/{listed[-1]['version']}", headers=owner)
    ).json()["content"]
    draft = {**document, "version": listed[-1]["version"] + 1, "title": "nul\u0000"}
    response = await api.http.post("/sops/dispute/versions", json=draft, headers=owner)
    _assert_invalid(response, "body")
    after = (await api.http.get("/sops/dispute/versions", headers=owner)).json()
    assert after == listed


async def test_a_body_that_is_not_json_answers_400_in_the_error_shape(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    headers = {**agent, "Content-Type": "application/json"}
    response = await api.http.post("/cases", content=b"\xff\xfe{", headers=headers)
    assert response.status_code in (400, 422), response.text
    assert set(response.json()) >= {"error", "message"}


@pytest.mark.parametrize("path", ["/cases/DSP-1%00", "/sops/dispute%00/versions"])
async def test_a_path_with_nul_answers_404(api: Api, path: str) -> None:
    """PostgreSQL cannot look such an id up at all: that was a 500."""
    response = await api.http.get(path, headers=api.user("lead"))
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"
