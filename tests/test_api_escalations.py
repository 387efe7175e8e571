"""SLA breaches and escalations over the API, on a real Temporal dev server, with real SMTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from sop_templates.registry import publish_new
from sop_templates.validation import parse_template
from store.db import session_scope
from tests.harness import Api, eventually, running_api, shipped_document
from tests.smtp_sink import SmtpSink

pytestmark = pytest.mark.asyncio(loop_scope="session")
TIER1, TIER2 = "disputes-tier1", "disputes-tier2"
SLA_SECONDS = 3


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink()
    server.start()
    yield server
    server.stop()


def _fast_triage_sop(engine: Engine) -> None:
    """Dispute v2: triage must be picked up within seconds, around the clock."""
    document = shipped_document("dispute")
    document["version"] = int(document["version"]) + 1
    document["steps"][0]["sla"] = {"budget": f"{SLA_SECONDS}s", "calendar": "24x7"}
    with session_scope(engine) as session:
        publish_new(session, parse_template(document), document, "test")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(
    dev_server: WorkflowEnvironment, engine: Engine, sink: SmtpSink
) -> AsyncIterator[Api]:
    _fast_triage_sop(engine)
    async with running_api(
        dev_server.client, engine, smtp_host="127.0.0.1", smtp_port=sink.port
    ) as api:
        yield api


async def _board(api: Api, headers: dict[str, str], case_id: str) -> list[dict[str, Any]]:
    response = await api.http.get("/escalations", params={"case_id": case_id}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _case(api: Api, headers: dict[str, str], case_id: str) -> dict[str, Any]:
    return (await api.http.get(f"/cases/{case_id}", headers=headers)).json()


async def test_breach_reaches_the_board_and_the_leads_inbox_then_leads_act(
    api: Api, sink: SmtpSink
) -> None:
    agent = api.user("agent", queues=[TIER1])
    lead = api.user("lead", queues=["disputes-leads"], email="lead@o2c.test")
    case = await api.open_dispute(agent)
    assert case["sop"]["version"] == shipped_document("dispute")["version"] + 1
    due = datetime.fromisoformat(case["tasks"][0]["sla_due"])

    async def board() -> list[dict[str, Any]]:
        return await _board(api, lead, case["id"])

    [esc] = await eventually(board, lambda b: len(b) == 1, timeout=SLA_SECONDS + 20)
    assert esc["kind"] == "sla_breach" and esc["queue"] == "disputes-leads"
    assert esc["status"] == "open" and esc["task_id"] == case["tasks"][0]["id"]
    lag = (datetime.fromisoformat(esc["opened_at"]) - due).total_seconds()
    assert 0 <= lag < 5, lag  # escalated within seconds of the deadline

    def mails() -> list[Any]:
        # The lead's notice (the customer's acknowledgement goes to the same sink).
        return [m for m in sink.messages() if case["id"] in m["Subject"] and "lead@" in m["To"]]

    async def probe() -> list[Any]:
        return mails()

    [mail] = await eventually(probe, lambda ms: len(ms) == 1)
    assert mail["To"] == "lead@o2c.test" and "lead" in mail["Subject"]

    # Agents may not act on escalations; leads may.
    assert (await api.http.get("/escalations", headers=agent)).status_code == 403
    ack = f"/escalations/{esc['id']}/acknowledge"
    assert (await api.http.post(ack, headers=agent)).status_code == 403
    acked = await api.http.post(ack, json={"note": "on it"}, headers=lead)
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    agent_name = (
        await api.http.get("/tasks", params={"case_id": case["id"]}, headers=agent)
    ).json()
    assert agent_name[0]["status"] == "open"
    moved = await api.http.post(
        f"/escalations/{esc['id']}/reassign",
        json={"to_queue": TIER1, "note": "fresh start"},
        headers=lead,
    )
    assert moved.status_code == 200, moved.text
    task = (await _case(api, lead, case["id"]))["tasks"][0]
    assert task["sla_state"] == "on_time" and datetime.fromisoformat(task["sla_due"]) > due
    done = await api.http.post(
        f"/escalations/{esc['id']}/resolve", json={"note": "handled"}, headers=lead
    )
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    again = await api.http.post(f"/escalations/{esc['id']}/resolve", json={}, headers=lead)
    assert again.status_code == 409, again.text

    async def history() -> list[dict[str, Any]]:
        return (await _case(api, lead, case["id"]))["history"]

    events = await eventually(history, lambda h: "escalation_resolve" in [e["event"] for e in h])
    by_event = {e["event"]: e for e in events}
    for event in (
        "sla_breached",
        "escalation_opened",
        "escalation_acknowledge",
        "escalation_reassign",
        "escalation_resolve",
        "task_reassigned",
    ):
        assert event in by_event, event
    assert by_event["escalation_acknowledge"]["actor"] == acked.json()["owner"]


async def test_an_agent_raises_a_case_and_the_lead_approves_from_the_board(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    lead = api.user("lead", queues=["disputes-leads"])
    case = await api.open_dispute(agent, amount="5000.00")
    for step, outcome in (("triage", "accept"), ("investigate", "valid")):
        detail = await _case(api, agent, case["id"])
        task = next(t for t in detail["tasks"] if t["step"] == step)
        assert (await api.http.post(f"/tasks/{task['id']}/claim", headers=agent)).status_code == 200
        if step == "investigate":
            # An agent raises work it serves; the answer is the escalation, not the case.
            bad = await api.http.post(
                f"/cases/{case['id']}/escalate", json={"reason": ""}, headers=agent
            )
            assert bad.status_code == 422
            raised = await api.http.post(
                f"/cases/{case['id']}/escalate",
                json={"reason": "customer threatens to churn", "task_id": task["id"]},
                headers=agent,
            )
            assert raised.status_code == 200, raised.text
            assert set(raised.json()) == {"id", "case_id", "status", "joined"}
            assert raised.json()["case_id"] == case["id"]
        done = await api.http.post(
            f"/tasks/{task['id']}/complete", json={"outcome": outcome}, headers=agent
        )
        assert done.status_code == 200, done.text
    detail = await _case(api, agent, case["id"])
    approval = next(t for t in detail["tasks"] if t["step"] == "lead_approval")
    # The approval waits in the leads' queue: not the agent's to raise.
    other_queue = await api.http.post(
        f"/cases/{case['id']}/escalate",
        json={"reason": "hurry", "task_id": approval["id"]},
        headers=agent,
    )
    assert other_queue.status_code == 403, other_queue.text

    async def board() -> list[dict[str, Any]]:
        return [e for e in await _board(api, lead, case["id"]) if e["kind"] == "approval"]

    [esc] = await eventually(board, lambda b: len(b) == 1)
    assert esc["task_id"] == approval["id"]
    approved = await api.http.post(
        f"/escalations/{esc['id']}/approve", json={"note": "goodwill credit"}, headers=lead
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "resolved"
    final = await api.settled_case(lead, case["id"])  # the credit memo goes to billing first
    assert final["status"] == "closed" and final["resolution"] == "credited"
    last = next(t for t in final["tasks"] if t["step"] == "lead_approval")
    assert last["outcome"] == "approve" and last["note"] == "goodwill credit"
