"""Auditors: timelines, replay verdicts and the case as it stood, on a real dev server."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import workflow

# The sandbox re-imports this module (it defines a workflow): everything else passes through.
with workflow.unsafe.imports_passed_through():
    import pytest
    from temporalio.testing import WorkflowEnvironment

    from audit.replay import replay_case
    from domain.case_models import CaseInput, CaseSnapshot
    from tests.harness import Api
    from workflows.case_workflow import CaseWorkflow
    from workflows.escalation_workflow import EscalationWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
TIER1 = "disputes-tier1"


@workflow.defn(name="CaseWorkflow")
class CaseWorkflowWithAnUnpatchedChange(CaseWorkflow):
    """What a careless change looks like: a new first step (a timer) added without patching."""

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseSnapshot:
        await workflow.sleep(1)
        return await super().run(inp)


def _view(case: dict[str, Any]) -> dict[str, Any]:
    """What an auditor compares: status, step, and each task's status and assignee."""
    return {
        "status": case["status"],
        "current_step": case["current_step"],
        "tasks": [(t["id"], t["status"], t["assignee"]) for t in case["tasks"]],
    }


async def _act(api: Api, headers: dict[str, str], path: str, body: Any = None) -> None:
    response = await api.http.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_timeline_replay_and_state_as_of(api: Api, dev_server: WorkflowEnvironment) -> None:
    agent = api.user("agent", queues=[TIER1])
    auditor = api.user("auditor")
    case = await api.open_dispute(agent, amount="200.00")
    cid = case["id"]
    seen: list[tuple[datetime, dict[str, Any]]] = []

    async def look(current: dict[str, Any] | None = None) -> None:
        current = current or (await api.http.get(f"/cases/{cid}", headers=agent)).json()
        seen.append((datetime.fromisoformat(current["history"][-1]["at"]), _view(current)))

    # Looks follow Updates: their results come from recorded workflow tasks. (A query right
    # after the start may see a first workflow task that is later retried at a later time.)
    await _act(api, agent, f"/tasks/{cid}.t1/claim")
    await look()
    await _act(api, agent, f"/tasks/{cid}.t1/complete", {"outcome": "accept", "note": "ok"})
    await look()
    await _act(api, agent, f"/tasks/{cid}.t2/claim")
    await _act(api, agent, f"/tasks/{cid}.t2/complete", {"outcome": "valid"})
    await look()  # the credit memo is on its way to billing
    await look(await api.settled_case(agent, cid))
    assert seen[-1][1]["status"] == "closed"

    # The timeline: every action, in order, with its actor.
    response = await api.http.get(f"/cases/{cid}/history", headers=auditor)
    assert response.status_code == 200, response.text
    actions = [
        (e["event"], e["actor"], e.get("outcome"))
        for e in response.json()
        if e["event"] in ("case_opened", "task_claimed", "task_completed", "case_closed")
    ]
    name = actions[0][1]
    assert name.startswith("agent-")
    assert actions == [
        ("case_opened", name, None),
        ("task_claimed", name, None),
        ("task_completed", name, "accept"),
        ("task_claimed", name, None),
        ("task_completed", name, "valid"),
        ("case_closed", None, None),
    ]

    # Replay against the current code: intact.
    verdict = await api.http.post(f"/cases/{cid}/replay", headers=auditor)
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["deterministic"] is True
    assert verdict.json()["verdict"] == "intact and deterministic"

    # The case as it stood at each moment the API was looked at, rebuilt from history.
    for instant, view in seen:
        state = await api.http.get(
            f"/cases/{cid}/state", params={"as_of": instant.isoformat()}, headers=auditor
        )
        assert state.status_code == 200, state.text
        assert _view(state.json()) == view
    history = await dev_server.client.get_workflow_handle(cid).fetch_history()
    last = history.events[-1].event_id
    by_event = await api.http.get(
        f"/cases/{cid}/state", params={"as_of": str(last)}, headers=auditor
    )
    assert by_event.json()["status"] == "closed"
    before = await api.http.get(
        f"/cases/{cid}/state", params={"as_of": "2000-01-01T00:00:00Z"}, headers=auditor
    )
    assert before.status_code == 404
    bad = await api.http.get(f"/cases/{cid}/state", params={"as_of": "yesterday"}, headers=auditor)
    assert bad.status_code == 422 and "as_of" in bad.json()["message"]

    # The same history against code changed without patching: diverges, at the first change.
    broken = await replay_case(history, [CaseWorkflowWithAnUnpatchedChange, EscalationWorkflow])
    assert broken.deterministic is False and broken.divergence
    first_marker = next(
        e.event_id for e in history.events if e.HasField("marker_recorded_event_attributes")
    )
    assert broken.divergence_event_id == first_marker, broken.divergence


async def test_auditors_read_but_never_change(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    auditor = api.user("auditor", queues=[TIER1])
    case = await api.open_dispute(agent)
    task = f"{case['id']}.t1"
    assert (await api.http.post(f"/tasks/{task}/claim", headers=auditor)).status_code == 403
    assert (
        await api.http.post(f"/tasks/{task}/complete", json={"outcome": "accept"}, headers=auditor)
    ).status_code == 403
    assert (await api.http.post("/cases", json={}, headers=auditor)).status_code in (403, 422)
    assert (await api.http.get(f"/cases/{case['id']}/history", headers=auditor)).status_code == 200
    assert (await api.http.post(f"/cases/{case['id']}/replay", headers=agent)).status_code == 403
    publish = await api.http.post("/sops/dispute/versions/1/publish", headers=auditor)
    assert publish.status_code == 403
    draft = await api.http.post("/sops/dispute/versions", json={"name": "dispute"}, headers=auditor)
    assert draft.status_code == 403
