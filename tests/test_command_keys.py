"""Idempotency-Keys on task commands and escalations: a retry repeats the first answer, a key
is bound to its user and its request, and nothing is applied twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.harness import Api, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIER1 = "disputes-tier1"


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{uuid.uuid4()}"}


async def _claimed_triage(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    case = await api.open_dispute(headers)

    async def probe() -> list[dict[str, Any]]:
        params = {"case_id": case["id"], "status": "open"}
        return (await api.http.get("/tasks", params=params, headers=headers)).json()

    [task] = await eventually(probe, lambda ts: len(ts) == 1)
    claimed = await api.http.post(f"/tasks/{task['id']}/claim", headers=headers)
    assert claimed.status_code == 200, claimed.text
    return claimed.json()


async def _history(api: Api, headers: dict[str, str], case_id: str) -> list[dict[str, Any]]:
    return (await api.http.get(f"/cases/{case_id}", headers=headers)).json()["history"]


async def test_a_completion_retried_with_its_key_repeats_its_answer(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    task = await _claimed_triage(api, agent)
    key = _key()
    url = f"/tasks/{task['id']}/complete"
    first = await api.http.post(url, json={"outcome": "accept"}, headers={**agent, **key})
    assert first.status_code == 200, first.text
    again = await api.http.post(url, json={"outcome": "accept"}, headers={**agent, **key})
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    history = await _history(api, agent, task["case_id"])
    done = [h for h in history if h["task_id"] == task["id"] and h["event"] == "task_completed"]
    assert len(done) == 1


async def test_a_key_reused_with_another_body_or_by_another_user_is_refused(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    other = api.user("agent", queues=[TIER1])
    task = await _claimed_triage(api, agent)
    key = _key()
    url = f"/tasks/{task['id']}/complete"
    changed = await api.http.post(url, json={"outcome": "accept"}, headers={**agent, **key})
    assert changed.status_code == 200, changed.text

    other_body = await api.http.post(
        url, json={"outcome": "not_a_dispute"}, headers={**agent, **key}
    )
    assert other_body.status_code == 409, other_body.text
    assert key["Idempotency-Key"] in other_body.json()["message"]

    other_user = await api.http.post(url, json={"outcome": "accept"}, headers={**other, **key})
    assert other_user.status_code == 409, other_user.text
    assert key["Idempotency-Key"] in other_user.json()["message"]
    assert other_user.json() != changed.json()  # another user never reads the first answer


async def test_concurrent_retries_with_one_key_apply_once(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    task = await _claimed_triage(api, agent)
    key = _key()
    url = f"/tasks/{task['id']}/complete"
    answers = await asyncio.gather(
        *(
            api.http.post(url, json={"outcome": "accept"}, headers={**agent, **key})
            for _ in range(4)
        )
    )
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({a.text for a in answers}) == 1
    history = await _history(api, agent, task["case_id"])
    assert sum(1 for h in history if h["event"] == "task_completed") == 1


async def test_an_escalation_sent_twice_with_its_key_escalates_once(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    agent = api.user("agent", queues=[TIER1])
    task = await _claimed_triage(api, agent)
    key = _key()
    url = f"/cases/{task['case_id']}/escalate"
    body = {"reason": "customer threatens to leave", "task_id": task["id"]}
    first = await api.http.post(url, json=body, headers={**agent, **key})
    assert first.status_code == 200, first.text
    again = await api.http.post(url, json=body, headers={**agent, **key})
    assert again.status_code == 200, again.text
    assert again.json() == first.json()  # the escalation it opened, once
    case = (await api.http.get(f"/cases/{task['case_id']}", headers=agent)).json()
    assert len(case["escalations"]) == 1
    for esc in case["escalations"]:
        await dev_server.client.get_workflow_handle(esc["id"]).terminate("test over")


async def test_every_keyed_route_reads_the_idempotency_key_header(api: Api) -> None:
    # The header once reached no task route (a parameter named `key` read a `key` header).
    spec = (await api.http.get("/openapi.json")).json()
    for path in (
        "/tasks/{task_id}/claim",
        "/tasks/{task_id}/release",
        "/tasks/{task_id}/complete",
        "/tasks/{task_id}/pause",
        "/tasks/{task_id}/resume",
        "/cases/{case_id}/escalate",
    ):
        headers = [
            p["name"] for p in spec["paths"][path]["post"]["parameters"] if p["in"] == "header"
        ]
        assert headers == ["Idempotency-Key"], (path, headers)
