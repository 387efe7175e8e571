"""Racing agents: the workflow decides, so each task is claimed exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.harness import Api, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")
QUEUE = "disputes-tier1"


# `engine` (under the shared `api`) is a fresh database per module: the queue holds only
# what these tests open.
async def _open_tasks(api: Api, headers: dict[str, str], expected: int) -> list[str]:
    async def probe() -> list[dict[str, object]]:
        r = await api.http.get(
            "/tasks", params={"queue": QUEUE, "status": "open", "limit": 100}, headers=headers
        )
        return r.json()

    tasks = await eventually(probe, lambda ts: len(ts) >= expected)
    return [str(t["id"]) for t in tasks]


async def test_twenty_concurrent_claims_of_one_task_one_wins(api: Api) -> None:
    agents = [api.user("agent", queues=[QUEUE]) for _ in range(20)]
    case = await api.open_dispute(agents[0])
    task_id = f"{case['id']}.t1"
    await _open_tasks(api, agents[0], 1)
    responses = await asyncio.gather(
        *(api.http.post(f"/tasks/{task_id}/claim", headers=h) for h in agents)
    )
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: 19}, codes
    winner = next(r.json()["assignee"] for r in responses if r.status_code == 200)
    assert all(r.json()["details"]["assignee"] == winner for r in responses if r.status_code == 409)
    detail = (await api.http.get(f"/cases/{case['id']}", headers=agents[0])).json()
    assert [h["event"] for h in detail["history"]].count("task_claimed") == 1


async def test_twenty_agents_claim_next_on_ten_tasks_each_claimed_once(api: Api) -> None:
    agents = [api.user("agent", queues=[QUEUE]) for _ in range(20)]
    cases = [await api.open_dispute(agents[0]) for _ in range(10)]
    expected = {f"{c['id']}.t1" for c in cases}
    assert set(await _open_tasks(api, agents[0], 10)) == expected

    responses = await asyncio.gather(
        *(api.http.post(f"/queues/{QUEUE}/claim-next", headers=h) for h in agents)
    )
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 10, 204: 10}, codes
    claimed = [r.json()["id"] for r in responses if r.status_code == 200]
    assert sorted(claimed) == sorted(expected)  # every task once, none twice
    assignees = {r.json()["assignee"] for r in responses if r.status_code == 200}
    assert len(assignees) == 10
