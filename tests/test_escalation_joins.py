"""Raising work that is already escalated joins the open escalation as a note instead of
opening another; once that escalation is resolved, raising it opens a new one. Over the
API, on a real Temporal dev server and both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.case_models import EscalateCase, EscalationEvent
from tests.harness import AGENT, Api, dispute_input, eventually, opened_dispute
from workflows import case_sla
from workflows.case_core import add_escalation

TIER1 = "disputes-tier1"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_a_breached_task_raised_by_hand_joins_its_breach_but_never_an_approval() -> None:
    case = opened_dispute(dispute_input("100.00"), NOW)
    task = case.tasks[0]
    breach = add_escalation(case, task, "sla_breach", "SLA breached", "casebook", NOW, 0)
    cmd = EscalateCase(actor=AGENT, reason="still nobody called", task_id=task.id)
    assert case_sla.joins_open_escalation(case, cmd)
    link = case_sla.escalate(case, cmd, NOW + timedelta(minutes=5), join=True)
    assert link.id == breach.id and len(case.escalations) == 1
    assert case_sla.escalated_by(case) == (breach, True)
    [note] = case.escalation_notes
    assert (note.escalation_id, note.by, note.note) == (breach.id, AGENT.name, cmd.reason)
    # Without the patch (cases raised before it), a second escalation as before.
    again = case_sla.escalate(case, cmd, NOW + timedelta(minutes=6), join=False)
    assert again.id != breach.id and case_sla.escalated_by(case) == (again, False)

    # A note that reaches the escalation after a lead resolved it comes back: a new one.
    declined = EscalationEvent(
        escalation_id=breach.id,
        event=case_sla.NOTE_DECLINED,
        actor=AGENT.name,
        note="still nobody called",
        status="resolved",
    )
    case_sla.record_escalation_event(case, declined, NOW + timedelta(minutes=7))
    assert breach.status == "resolved" and case.escalations[-1].reason == "still nobody called"
    assert len(case.escalations) == 3 and not case.escalations[-1].started
    assert case.history[-1].detail["instead_of"] == breach.id

    approvals = opened_dispute(dispute_input("100.00"), NOW)
    add_escalation(approvals, approvals.tasks[0], "approval", "approve", "casebook", NOW, 0)
    raised = EscalateCase(actor=AGENT, reason="hurry", task_id=approvals.tasks[0].id)
    assert not case_sla.joins_open_escalation(approvals, raised)


async def _raise(api: Api, headers: dict[str, str], case_id: str, task_id: str, reason: str) -> Any:
    response = await api.http.post(
        f"/cases/{case_id}/escalate", json={"reason": reason, "task_id": task_id}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.asyncio(loop_scope="session")
async def test_raising_escalated_work_again_is_a_note_on_its_open_escalation(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    colleague = api.user("agent", queues=[TIER1])
    lead = api.user("lead")
    case = await api.open_dispute(agent)
    task_id = case["tasks"][0]["id"]

    first = await _raise(api, agent, case["id"], task_id, "customer threatens to churn")
    assert first["joined"] is False
    again = await _raise(api, colleague, case["id"], task_id, "they called again, angrier")
    assert (again["id"], again["joined"]) == (first["id"], True)

    async def escalation() -> Any:
        return await api.http.get(f"/escalations/{first['id']}", headers=lead)

    seen = await eventually(
        escalation,
        lambda r: r.status_code == 200 and r.json()["joined"] == 1,
    )
    assert seen.status_code == 200, seen.text
    [note] = [h for h in seen.json()["history"] if h["event"] == "escalation_note"]
    assert note["note"] == "they called again, angrier" and note["actor"].startswith("agent-")
    detail = (await api.http.get(f"/cases/{case['id']}", headers=lead)).json()
    assert [e["id"] for e in detail["escalations"]] == [first["id"]]
    assert "escalation_joined" in [h["event"] for h in detail["history"]]
    board = await api.http.get("/escalations", params={"case_id": case["id"]}, headers=lead)
    assert len(board.json()) == 1

    # Resolved: the next raise is new work for the leads.
    resolved = await api.http.post(
        f"/escalations/{first['id']}/resolve", json={"note": "called them"}, headers=lead
    )
    assert resolved.status_code == 200, resolved.text

    async def link_status() -> str:
        case_now = (await api.http.get(f"/cases/{case['id']}", headers=lead)).json()
        return str(case_now["escalations"][0]["status"])

    assert await eventually(link_status, lambda s: s == "resolved") == "resolved"
    third = await _raise(api, agent, case["id"], task_id, "a new complaint")
    assert third["joined"] is False and third["id"] != first["id"]
