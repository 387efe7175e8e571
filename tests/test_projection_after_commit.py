"""The read model is written by a regular activity, after the workflow task that made the
state is persisted, and each history entry travels to it once (never the whole past again).
The escalation board too: an escalation's projections are activities, never a local
activity that could write a state Temporal then loses."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.testing import WorkflowEnvironment

from activities.read_model import PROJECT_CASE, PROJECT_ESCALATION
from audit.replay import replay_case
from store.read_model import stored_escalation
from tests.harness import Api, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")
TIER1 = "disputes-tier1"


def _projected(event: HistoryEvent, activity: str = PROJECT_CASE) -> dict | None:
    attrs = event.activity_task_scheduled_event_attributes
    if not event.HasField("activity_task_scheduled_event_attributes"):
        return None
    if attrs.activity_type.name != activity:
        return None
    return json.loads(attrs.input.payloads[0].data)


def _markers(history: Any) -> list[str]:
    return [
        e.marker_recorded_event_attributes.marker_name
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    ]


async def test_projections_are_activities_that_send_each_entry_once(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    agent = api.user("agent", queues=[TIER1])
    cid = (await api.open_dispute(agent, amount="150.00"))["id"]
    for n, outcome in ((1, "accept"), (2, "valid")):
        await api.http.post(f"/tasks/{cid}.t{n}/claim", headers=agent)
        done = await api.http.post(
            f"/tasks/{cid}.t{n}/complete", json={"outcome": outcome}, headers=agent
        )
        assert done.status_code == 200, done.text
    final = await api.settled_case(agent, cid)

    history = await dev_server.client.get_workflow_handle(cid).fetch_history()
    assert "core_local_activity" not in _markers(history)  # no local activity left in a new case
    sent = [p for p in (_projected(e) for e in history.events) if p is not None]
    assert len(sent) >= 3
    # Each projection carries the entries since the previous one: together, the history once.
    offsets = [p["history_offset"] for p in sent]
    assert offsets == sorted(offsets) and offsets[0] == 0
    for before, after in itertools.pairwise(sent):
        assert after["history_offset"] == before["history_offset"] + len(before["history"])
    assert sum(len(p["history"]) for p in sent) <= len(final["history"])

    verdict = await replay_case(history)
    assert verdict.deterministic, verdict.divergence
    # Auditors still get every state, whole: each Update's and each projection's.
    revisions = [s.revision for s in verdict.states]
    assert revisions == sorted(set(revisions))
    assert all(len(s.history) == s.revision for s in verdict.states)


async def test_an_escalation_projects_to_the_board_only_after_its_state_is_persisted(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    agent = api.user("agent", queues=[TIER1])
    lead = api.user("lead", queues=["disputes-leads"])
    cid = (await api.open_dispute(agent, amount="150.00"))["id"]
    raised = await api.http.post(
        f"/cases/{cid}/escalate", json={"reason": "customer threatens to leave"}, headers=agent
    )
    assert raised.status_code == 200, raised.text
    eid = raised.json()["id"]
    handle = dev_server.client.get_workflow_handle(eid)

    async def on_board() -> dict[str, Any] | None:
        # The case starts the escalation's workflow a moment after it answered.
        return await asyncio.to_thread(stored_escalation, api.engine, eid)

    assert await eventually(on_board, lambda row: row is not None)
    for action in ("acknowledge", "resolve"):
        acted = await api.http.post(
            f"/escalations/{eid}/{action}", json={"note": action}, headers=lead
        )
        assert acted.status_code == 200, acted.text
    final = await handle.result()  # resolved: the escalation ends once the board has it

    history = await handle.fetch_history()
    assert "core_local_activity" not in _markers(history)  # nothing written mid-task
    sent = [p for p in (_projected(e, PROJECT_ESCALATION) for e in history.events) if p]
    revisions = [p["revision"] for p in sent]
    assert revisions == sorted(set(revisions)) and revisions[-1] == final["revision"]
    assert sent[-1]["status"] == "resolved"
    assert stored_escalation(api.engine, eid)["revision"] == final["revision"]
    verdict = await replay_case(history)
    assert verdict.deterministic, verdict.divergence
