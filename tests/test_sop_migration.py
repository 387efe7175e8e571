"""Moving running cases to a newer SOP version: dry run first, then a recorded move."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Api, shipped_document

pytestmark = pytest.mark.asyncio(loop_scope="session")
TIER1 = "disputes-tier1"
SHIPPED = int(shipped_document("dispute")["version"])  # what new cases pin
NEW = SHIPPED + 1


def _next() -> dict[str, Any]:
    """The next version asks for documents in a new step (`request_documents`) and drops
    `await_customer`."""
    doc = shipped_document("dispute")
    doc["version"] = NEW
    steps = {s["id"]: s for s in doc["steps"]}
    steps["triage"]["outcomes"] = ["accept", "not_a_dispute", "duplicate"]
    steps["triage"]["transitions"]["duplicate"] = "closed_not_a_dispute"
    steps["investigate"]["transitions"]["need_info"] = "request_documents"
    request = {**steps.pop("await_customer"), "id": "request_documents"}
    doc["steps"] = [*steps.values(), request]
    return doc


async def _advance(api: Api, agent: dict[str, str], cid: str, n: int, outcome: str) -> None:
    for path, body in (
        (f"/tasks/{cid}.t{n}/claim", None),
        (f"/tasks/{cid}.t{n}/complete", {"outcome": outcome}),
    ):
        response = await api.http.post(path, json=body, headers=agent)
        assert response.status_code == 200, response.text


async def test_dry_run_then_move_the_movable_cases(api: Api) -> None:
    agent, owner = api.user("agent", queues=[TIER1]), api.user("sop_owner")
    auditor = api.user("auditor")  # an SOP owner does not read case data
    at_triage = (await api.open_dispute(agent))["id"]
    waiting = (await api.open_dispute(agent))["id"]
    await _advance(api, agent, waiting, 1, "accept")
    await _advance(api, agent, waiting, 2, "need_info")  # now in await_customer (gone next)

    draft = await api.http.post("/sops/dispute/versions", json=_next(), headers=owner)
    assert draft.status_code == 201, draft.text
    assert (
        await api.http.post(f"/sops/dispute/versions/{NEW}/publish", headers=owner)
    ).status_code == 200

    url = f"/sops/dispute/versions/{NEW}/migrations"
    assert (await api.http.post(url, json={}, headers=agent)).status_code == 403
    dry = await api.http.post(url, json={"dry_run": True}, headers=owner)
    assert dry.status_code == 200, dry.text
    report = dry.json()
    assert at_triage in report["movable"] and report["moved"] == []
    blocked = {b["case_id"]: b["reason"] for b in report["blocked"]}
    assert "await_customer" in blocked[waiting] and f"does not exist in v{NEW}" in blocked[waiting]
    unchanged = (await api.http.get(f"/cases/{at_triage}", headers=auditor)).json()
    assert unchanged["sop"]["version"] == SHIPPED  # a dry run moves nothing

    moved = await api.http.post(
        url, json={"dry_run": False, "case_ids": [at_triage, waiting]}, headers=owner
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["moved"] == [at_triage]
    case = (await api.http.get(f"/cases/{at_triage}", headers=auditor)).json()
    assert case["sop"]["version"] == NEW
    assert case["tasks"][0]["allowed_outcomes"] == ["accept", "not_a_dispute", "duplicate"]
    [move] = [h for h in case["history"] if h["event"] == "sop_migrated"]
    assert move["actor"].startswith("sop_owner-") and move["detail"]["from_version"] == SHIPPED
    stayed = (await api.http.get(f"/cases/{waiting}", headers=auditor)).json()
    assert stayed["sop"]["version"] == SHIPPED and stayed["current_step"] == "await_customer"
    assert not [h for h in stayed["history"] if h["event"] == "sop_migrated"]

    # The moved case runs on the new version's rules from here on.
    await _advance(api, agent, at_triage, 1, "duplicate")
    final = (await api.http.get(f"/cases/{at_triage}", headers=auditor)).json()
    assert final["status"] == "closed" and final["resolution"] == "not_a_dispute"
