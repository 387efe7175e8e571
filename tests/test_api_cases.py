"""A dispute from intake to close over the HTTP API, on a real Temporal dev server and worker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from sop_templates.registry import content_hash
from store.tables import CaseRow, TaskRow
from tests.harness import DISPUTE, Api, eventually, shipped_document

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIER1 = "disputes-tier1"
TIER2 = "disputes-tier2"


async def _inbox(api: Api, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = await api.http.get("/tasks", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _open_task(api: Api, headers: dict[str, str], case_id: str, step: str) -> dict[str, Any]:
    """The case's open task for `step`, once the inbox shows it."""

    async def probe() -> list[dict[str, Any]]:
        return await _inbox(api, headers, case_id=case_id, status="open")

    tasks = await eventually(probe, lambda ts: any(t["step"] == step for t in ts))
    assert [t["step"] for t in tasks] == [step], tasks
    return tasks[0]


async def _claim_and_complete(
    api: Api,
    headers: dict[str, str],
    task_id: str,
    outcome: str,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    claimed = await api.http.post(f"/tasks/{task_id}/claim", headers=headers)
    assert claimed.status_code == 200, claimed.text
    done = await api.http.post(
        f"/tasks/{task_id}/complete", json={"outcome": outcome, "data": data or {}}, headers=headers
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"
    return done.json()


async def test_healthz_reports_database_and_temporal(api: Api) -> None:
    response = await api.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "temporal": "ok"}


async def test_metrics_count_requests_by_route(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    await api.http.get("/cases/DSP-NOPE", headers=agent)
    text = (await api.http.get("/metrics", headers=api.user("auditor"))).text
    assert (
        'casebook_http_requests_total{method="GET",route="/cases/{case_id}",status="404"}' in text
    )
    assert "casebook_http_request_seconds_bucket" in text


async def test_dispute_above_threshold_goes_through_lead_approval_to_close(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    lead = api.user("lead", queues=[TIER2])
    case = await api.open_dispute(agent, amount="1250.00")
    assert case["status"] == "open"
    assert case["sop"] == {
        "name": "dispute",
        "version": 3,  # dispute v3: billing takes the disputed invoices out of dunning first
        "content_hash": content_hash(shipped_document("dispute", 3)),
    }
    assert case["amount"] == "1250.00"

    triage = await _open_task(api, agent, case["id"], "triage")
    assert triage["queue"] == TIER1 and triage["allowed_outcomes"] == ["accept", "not_a_dispute"]
    await _claim_and_complete(api, agent, triage["id"], "accept")

    investigate = await _open_task(api, agent, case["id"], "investigate")
    claimed = await api.http.post(f"/queues/{TIER1}/claim-next", headers=agent)
    # Older open tasks from other tests share the queue; claim-next takes the most urgent first.
    while claimed.status_code == 200 and claimed.json()["id"] != investigate["id"]:
        claimed = await api.http.post(f"/queues/{TIER1}/claim-next", headers=agent)
    assert claimed.status_code == 200 and claimed.json()["assignee"].startswith("agent-")
    done = await api.http.post(
        f"/tasks/{investigate['id']}/complete",
        json={
            "outcome": "valid",
            "data": {"root_cause": "price list not updated"},
            "note": "confirmed with sales",
        },
        headers=agent,
    )
    assert done.status_code == 200, done.text

    approval = await _open_task(api, lead, case["id"], "lead_approval")
    assert approval["queue"] == TIER2
    refused = await api.http.post(f"/tasks/{approval['id']}/claim", headers=agent)
    assert refused.status_code == 403, refused.text
    assert TIER2 in refused.json()["message"]
    await _claim_and_complete(api, lead, approval["id"], "approve")

    detail = await api.settled_case(lead, case["id"])
    assert detail["status"] == "closed" and detail["resolution"] == "credited"
    assert [t["step"] for t in detail["tasks"]] == ["triage", "investigate", "lead_approval"]
    entered = [h["step"] for h in detail["history"] if h["event"] == "step_entered"]
    assert entered == [
        "take_out_of_dunning",
        "acknowledge",
        "triage",
        "investigate",
        "approval_route",
        "lead_approval",
        "issue_credit",
        "notify_credited",
        "release_credited",
        "closed_credited",
    ]
    memo = detail["data"]["credit_memo"]
    assert memo["invoice_id"] == "INV-1001" and memo["amount"] == "1250.00"
    # The approval was on the lead board too; deciding the task settled it there.
    [approval_esc] = await _board(api, lead, case["id"], lambda b: b[0]["status"] == "resolved")
    assert approval_esc["kind"] == "approval" and approval_esc["task_id"] == approval["id"]
    completed = [h for h in detail["history"] if h["event"] == "task_completed"]
    assert completed[1]["outcome"] == "valid" and completed[1]["note"] == "confirmed with sales"

    async def closed_list() -> list[dict[str, Any]]:
        r = await api.http.get(
            "/cases", params={"status": "closed", "type": "dispute"}, headers=lead
        )
        return r.json()

    listed = await eventually(closed_list, lambda cs: any(c["id"] == case["id"] for c in cs))
    assert any(c["id"] == case["id"] and c["resolution"] == "credited" for c in listed)


async def _board(
    api: Api, lead: dict[str, str], case_id: str, accept: Any = bool
) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]]:
        params = {"case_id": case_id}
        return (await api.http.get("/escalations", params=params, headers=lead)).json()

    return await eventually(probe, lambda b: bool(b) and accept(b))


async def test_a_lead_approves_a_large_credit_on_the_escalation_board(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    lead = api.user("lead", queues=[TIER2])
    case = await api.open_dispute(agent, amount="4000.00")
    await _claim_and_complete(
        api, agent, (await _open_task(api, agent, case["id"], "triage"))["id"], "accept"
    )
    investigate = await _open_task(api, agent, case["id"], "investigate")
    await _claim_and_complete(api, agent, investigate["id"], "valid")

    [esc] = await _board(api, lead, case["id"])
    assert esc["kind"] == "approval" and esc["status"] == "open" and esc["step"] == "lead_approval"
    refused = await api.http.post(f"/escalations/{esc['id']}/approve", headers=agent, json={})
    assert refused.status_code == 403
    approved = await api.http.post(
        f"/escalations/{esc['id']}/approve", headers=lead, json={"note": "customer of 10 years"}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "resolved"
    detail = await api.settled_case(lead, case["id"])
    assert (
        detail["resolution"] == "credited" and detail["data"]["credit_memo"]["amount"] == "4000.00"
    )
    decided = next(t for t in detail["tasks"] if t["step"] == "lead_approval")
    assert decided["outcome"] == "approve" and decided["assignee"] == approved.json()["owner"]


async def test_small_credit_is_auto_approved(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    case = await api.open_dispute(agent, amount="200.00", reason_code="damaged_goods")
    triage = await _open_task(api, agent, case["id"], "triage")
    await _claim_and_complete(api, agent, triage["id"], "accept")
    investigate = await _open_task(api, agent, case["id"], "investigate")
    await _claim_and_complete(api, agent, investigate["id"], "valid")
    detail = await api.settled_case(agent, case["id"])
    assert detail["status"] == "closed" and detail["resolution"] == "credited"
    assert "lead_approval" not in [t["step"] for t in detail["tasks"]]


async def test_conflicts_and_invalid_outcomes(api: Api) -> None:
    alice = api.user("agent", queues=[TIER1])
    bob = api.user("agent", queues=[TIER1])
    case = await api.open_dispute(alice)
    task = await _open_task(api, alice, case["id"], "triage")
    assert (await api.http.post(f"/tasks/{task['id']}/claim", headers=alice)).status_code == 200

    taken = await api.http.post(f"/tasks/{task['id']}/claim", headers=bob)
    assert taken.status_code == 409
    assert taken.json()["details"]["assignee"].startswith("agent-")
    assert taken.json()["details"]["assignee"] in taken.json()["message"]

    not_mine = await api.http.post(
        f"/tasks/{task['id']}/complete", json={"outcome": "accept"}, headers=bob
    )
    assert not_mine.status_code == 409

    bad = await api.http.post(
        f"/tasks/{task['id']}/complete", json={"outcome": "approve"}, headers=alice
    )
    assert bad.status_code == 422
    assert bad.json()["details"]["allowed_outcomes"] == ["accept", "not_a_dispute"]
    assert "accept, not_a_dispute" in bad.json()["message"]

    released = await api.http.post(f"/tasks/{task['id']}/release", headers=alice)
    assert released.status_code == 200 and released.json()["status"] == "open"
    assert released.json()["assignee"] is None
    assert (await api.http.post(f"/tasks/{task['id']}/claim", headers=bob)).status_code == 200
    detail = (await api.http.get(f"/cases/{case['id']}", headers=bob)).json()
    assert [h["event"] for h in detail["history"] if h["task_id"] == task["id"]] == [
        "task_opened",
        "task_claimed",
        "task_released",
        "task_claimed",
    ]


async def test_vendor_and_role_boundaries(api: Api) -> None:
    acme = api.user("agent", vendor="acme", queues=[TIER1])
    globex = api.user("agent", vendor="globex", queues=[TIER1])
    auditor = api.user("auditor")
    case = await api.open_dispute(acme)
    assert case["vendor"] == "acme"
    task = await _open_task(api, acme, case["id"], "triage")
    # Out of the vendor's scope: not found, so its existence is not revealed either.
    other_vendor = await api.http.post(f"/tasks/{task['id']}/claim", headers=globex)
    assert other_vendor.status_code == 404 and "acme" not in other_vendor.text
    assert (await api.http.get(f"/cases/{case['id']}", headers=globex)).status_code == 404
    assert (await api.http.post(f"/tasks/{task['id']}/claim", headers=auditor)).status_code == 403
    assert (await api.http.post("/cases", json=DISPUTE, headers=auditor)).status_code == 403
    no_queue = api.user("agent", queues=["collections-tier1"])
    assert (await api.http.post(f"/queues/{TIER1}/claim-next", headers=no_queue)).status_code == 403


async def test_idempotency_key_returns_the_same_case(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    customer = f"CUST-{uuid.uuid4().hex[:6]}"
    key = {"Idempotency-Key": f"intake-{uuid.uuid4()}"}
    body = {**DISPUTE, "customer_id": customer}
    first = await api.http.post("/cases", json=body, headers={**agent, **key})
    again = await api.http.post("/cases", json=body, headers={**agent, **key})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    changed = await api.http.post(
        "/cases", json={**body, "amount": "9.99"}, headers={**agent, **key}
    )
    assert changed.status_code == 409 and "Idempotency-Key" in changed.json()["message"]
    listed = (await api.http.get("/cases", params={"customer_id": customer}, headers=agent)).json()
    assert [c["id"] for c in listed] == [first.json()["id"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "warranty"}, "type"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": "12,50"}, "amount"),
        ({"amount": 12.5}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"currency": "usd"}, "currency"),
        ({"customer_id": None}, "customer_id"),
        ({"reason_code": "boredom"}, "reason_code"),
    ],
)
async def test_bad_input_is_refused_and_creates_nothing(
    api: Api, change: dict[str, Any], field: str
) -> None:
    agent = api.user("agent", queues=[TIER1])
    customer = f"CUST-{uuid.uuid4().hex[:6]}"
    body = {**DISPUTE, "customer_id": customer, **change}
    if change.get("customer_id", "") is None:
        del body["customer_id"]
    response = await api.http.post("/cases", json=body, headers=agent)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid"
    assert field in response.json()["message"]
    with Session(api.engine) as session:
        assert session.exec(select(CaseRow).where(CaseRow.customer_id == customer)).all() == []


async def test_unknown_things_and_bad_tokens(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    for path in ("/tasks/DSP-NOPE.t1/claim", "/tasks/garbage/claim"):
        response = await api.http.post(path, headers=agent)
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "not_found"
    assert (await api.http.get("/cases/DSP-NOPE", headers=agent)).status_code == 404
    for headers in ({}, {"Authorization": "Bearer cb_wrong"}, {"Authorization": "Basic x"}):
        response = await api.http.post("/cases", json=DISPUTE, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized"
    empty = api.user("lead")
    assert (await api.http.post("/queues/empty-queue/claim-next", headers=empty)).status_code == 204


async def test_store_rebuild_restores_the_read_model(
    api: Api, dev_server: WorkflowEnvironment, engine: Engine
) -> None:
    from cli.main import _rebuild
    from settings import Settings

    agent = api.user("agent", queues=[TIER1])
    case = await api.open_dispute(agent)
    await _open_task(api, agent, case["id"], "triage")  # once billing marked the dispute
    with Session(engine) as session:
        before = {t.id: t.status for t in session.exec(select(TaskRow)).all()}
        for row in session.exec(select(TaskRow)).all():
            session.delete(row)
        session.commit()
    settings = Settings(
        database_url=str(engine.url.render_as_string(hide_password=False)),
        temporal_address=dev_server.client.service_client.config.target_host,
        task_queue=api.settings.task_queue,
    )
    count = await _rebuild(settings)
    assert count >= 1
    with Session(engine) as session:
        after = {t.id: t.status for t in session.exec(select(TaskRow)).all()}
    assert after == before
    assert f"{case['id']}.t1" in after
