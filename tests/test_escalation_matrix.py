"""The escalation matrix as versioned data: validation with paths, the lifecycle over the
API (draft, diff, publish, retire; who and when), and cases pinning the version they were
opened under, on a real Temporal dev server and both databases."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app as cli
from escalations.matrix import shipped_document
from escalations.matrix_registry import parse_matrix
from sop_templates.validation import InvalidTemplateError
from tests.harness import Api, eventually

TIER1 = "disputes-tier1"


def _errors(document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidTemplateError) as raised:
        parse_matrix(document)
    return {e.path: e.message for e in raised.value.errors}


def test_the_shipped_matrix_is_valid() -> None:
    assert len(parse_matrix(shipped_document()).rules) == 4


def test_every_error_is_reported_at_its_path() -> None:
    document = {
        "rules": [
            {
                "match": {"queue": "disputes-*", "colour": "red"},
                "levels": [
                    {"name": "lead", "queue": "nobody-serves-this", "sla": "4x"},
                    {"name": "lead", "queue": "o2c-managers", "sla": "1d"},
                ],
            },
            {"match": {}, "levels": []},
        ]
    }
    errors = _errors(document)
    assert set(errors) == {
        "rules[0].match.colour",
        "rules[0].levels[0].queue",
        "rules[0].levels[0].sla",
        "rules[0].levels[1].name",
        "rules[1].levels",
    }
    assert "nobody-serves-this" in errors["rules[0].levels[0].queue"]
    assert "appears twice" in errors["rules[0].levels[1].name"]


def test_every_case_finds_a_route_and_every_rule_is_reachable() -> None:
    no_catch_all = copy.deepcopy(shipped_document())
    no_catch_all["rules"].pop()
    assert "must match any queue" in _errors(no_catch_all)["rules[2].match"]
    shadowed = copy.deepcopy(shipped_document())
    shadowed["rules"].insert(0, {"match": {}, "levels": shadowed["rules"][0]["levels"]})
    errors = _errors(shadowed)
    assert set(errors) == {"rules[1]", "rules[2]", "rules[3]", "rules[4]"}
    assert "rules[0] already matches everything" in errors["rules[1]"]


async def _listing(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    response = await api.http.get("/escalation-matrix", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _escalation_queue(
    api: Api, agent: dict[str, str], lead: dict[str, str], case: dict[str, Any]
) -> str:
    """Raise the case's triage task by hand; the queue its escalation went to."""
    task = case["tasks"][0]
    raised = await api.http.post(
        f"/cases/{case['id']}/escalate",
        json={"reason": "customer on the phone", "task_id": task["id"]},
        headers=agent,
    )
    assert raised.status_code == 200, raised.text

    async def probe() -> Any:
        return await api.http.get(f"/escalations/{raised.json()['id']}", headers=lead)

    response = await eventually(probe, lambda r: r.status_code == 200)
    assert response.status_code == 200, response.text
    return str(response.json()["queue"])


@pytest.mark.asyncio(loop_scope="session")
async def test_matrix_versions_over_the_api_and_cases_pin_theirs(api: Api) -> None:
    owner = api.user("sop_owner")
    lead = api.user("lead")
    agent = api.user("agent", queues=[TIER1])

    # The shipped file is version 1, published by casebook; leads and auditors read it.
    listing = await _listing(api, owner)
    assert listing["current_version"] == 1
    [v1] = listing["versions"]
    assert (v1["status"], v1["created_by"], v1["published_by"]) == (
        "published",
        "casebook",
        "casebook",
    )
    assert (await _listing(api, api.user("auditor")))["current_version"] == 1
    shown = await api.http.get("/escalation-matrix/versions/1", headers=lead)
    assert shown.status_code == 200 and shown.json()["content"] == shipped_document()
    assert (await api.http.get("/escalation-matrix", headers=agent)).status_code == 403
    new = copy.deepcopy(shipped_document())
    new["rules"][0]["levels"][0].update(queue="tier2-leads", sla="2h")
    assert (await api.http.post("/escalation-matrix", json=new, headers=lead)).status_code == 403

    before = await api.open_dispute(agent)
    assert before["escalation_matrix_version"] == 1

    # Invalid: 422 with every error at its path, and nothing stored.
    bad = copy.deepcopy(new)
    bad["rules"][1]["levels"][1]["sla"] = "soon"
    bad["rules"][2]["levels"][0]["queue"] = "nobody"
    refused = await api.http.post("/escalation-matrix", json=bad, headers=owner)
    assert refused.status_code == 422, refused.text
    paths = {e["path"] for e in refused.json()["details"]["errors"]}
    assert paths == {"rules[1].levels[1].sla", "rules[2].levels[0].queue"}
    assert len((await _listing(api, owner))["versions"]) == 1

    drafted = await api.http.post(
        "/escalation-matrix", json=new, params={"note": "disputes go to tier 2"}, headers=owner
    )
    assert drafted.status_code == 201, drafted.text
    draft = drafted.json()
    assert (draft["version"], draft["status"], draft["note"]) == (
        2,
        "draft",
        "disputes go to tier 2",
    )
    diff = await api.http.get("/escalation-matrix/diff", params={"from": 1, "to": 2}, headers=lead)
    assert diff.status_code == 200, diff.text
    assert {(c["path"], c["before"], c["after"]) for c in diff.json()["changes"]} == {
        ("rules[0].levels[0].queue", "disputes-leads", "tier2-leads"),
        ("rules[0].levels[0].sla", "4h", "2h"),
    }
    # A draft changes nothing for new cases.
    assert (await api.open_dispute(agent))["escalation_matrix_version"] == 1

    published = await api.http.post("/escalation-matrix/versions/2/publish", headers=owner)
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "published"
    assert published.json()["published_by"] == draft["created_by"]
    again = await api.http.post("/escalation-matrix/versions/2/publish", headers=owner)
    assert again.status_code == 409, again.text

    after = await api.open_dispute(agent)
    assert after["escalation_matrix_version"] == 2
    # Each case routes by the version it pinned, whatever is published now.
    assert await _escalation_queue(api, agent, lead, before) == "disputes-leads"
    assert await _escalation_queue(api, agent, lead, after) == "tier2-leads"
    pinned = await api.http.get(f"/cases/{before['id']}", headers=lead)
    assert pinned.json()["escalation_matrix_version"] == 1

    retired = await api.http.post("/escalation-matrix/versions/1/retire", headers=owner)
    assert retired.status_code == 200 and retired.json()["retired_by"] == draft["created_by"]
    last = await api.http.post("/escalation-matrix/versions/2/retire", headers=owner)
    assert last.status_code == 409 and "only published version" in last.text
    unknown = await api.http.get("/escalation-matrix/versions/9", headers=owner)
    assert unknown.status_code == 404 and "versions: 1, 2" in unknown.text


def test_the_cli_validates_publishes_lists_and_diffs_versions(tmp_path: Path) -> None:
    data_dir = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - match: {}\n    levels:\n      - {name: lead, queue: x, sla: 4x}\n")
    refused = runner.invoke(cli, ["matrix", "validate", str(bad)])
    assert refused.exit_code == 1
    assert "rules[0].levels[0].queue: unknown queue 'x'" in refused.output
    assert "rules[0].levels[0].sla: SLA budget '4x' does not parse" in refused.output

    new = copy.deepcopy(shipped_document())
    new["rules"][3]["levels"][1]["sla"] = "2d"
    good = tmp_path / "matrix.yaml"
    good.write_text(yaml.safe_dump(new))
    published = runner.invoke(
        cli, ["matrix", "publish", str(good), "--by", "sam", "--note", "managers: 2d", *data_dir]
    )
    assert published.exit_code == 0, published.output
    assert published.output.startswith("published escalation matrix v2 (sha256:")
    listed = runner.invoke(cli, ["matrix", "list", *data_dir]).output.splitlines()
    assert listed[0].startswith("v1 published: created ") and "by casebook" in listed[0]
    assert listed[1].startswith("v2 published: ") and listed[1].endswith("note: managers: 2d")
    diffed = runner.invoke(cli, ["matrix", "diff", "1", "2", *data_dir]).output.splitlines()
    assert diffed == [
        "escalation matrix v1 -> v2: 1 change",
        '  ~ rules[3].levels[1].sla: "1d" -> "2d"',
    ]
    shown = runner.invoke(cli, ["matrix", "show", "2", *data_dir])
    assert shown.exit_code == 0 and "sla: 2d" in shown.output
    assert runner.invoke(cli, ["matrix", "show", "7", *data_dir]).exit_code == 1
