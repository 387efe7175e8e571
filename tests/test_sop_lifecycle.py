"""SOP versions over the API: drafts, validation, publish, pinning, retire, diff, cases on a
version, on a real Temporal dev server and worker, on SQLite and PostgreSQL. Then the
registry's numbering rules and `casebook sop diff`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from cli.main import app as cli
from sop_templates import registry, validation
from sop_templates.registry import (
    NoPublishedVersionError,
    SopConflictError,
    VersionExistsError,
    create_draft,
    latest_published,
    publish,
    retire,
)
from sop_templates.validation import InvalidTemplateError
from store.db import session_scope
from store.tables import SopVersionRow
from tests.harness import Api, running_api, shipped_document, terminate_cases

TIER1 = "disputes-tier1"
V1_TRIAGE_OUTCOMES = ["accept", "not_a_dispute"]
# The newest shipped dispute version: what new cases pin on a freshly seeded registry.
SHIPPED = int(shipped_document("dispute")["version"])


def _dispute(version: int) -> dict[str, Any]:
    document = shipped_document("dispute")
    document["version"] = version
    return document


def _step(document: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in document["steps"] if s["id"] == step_id)


def _with_evidence_review(version: int) -> dict[str, Any]:
    """A lower approval threshold, a `duplicate` outcome at triage, and accepted disputes
    reviewed for evidence before the investigation."""
    document = _dispute(version)
    document["parameters"]["approval_threshold"] = 500
    triage = _step(document, "triage")
    triage["outcomes"].append("duplicate")
    triage["transitions"].update(accept="review_evidence", duplicate="closed_not_a_dispute")
    document["steps"].insert(
        1,
        {
            "id": "review_evidence",
            "kind": "human_task",
            "title": "Check the customer's evidence is complete",
            "queue": TIER1,
            "outcomes": ["complete"],
            "transitions": {"complete": "investigate"},
        },
    )
    return document


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(dev_server: WorkflowEnvironment, engine: Engine) -> AsyncIterator[Api]:
    async with running_api(dev_server.client, engine) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="session")
async def case_ids(api: Api, dev_server: WorkflowEnvironment) -> AsyncIterator[list[str]]:
    """Cases a test opens, stopped when it ends."""
    ids: list[str] = []
    yield ids
    await terminate_cases(dev_server.client, ids)


async def _versions(api: Api, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await api.http.get("/sops/dispute/versions", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _next_version(api: Api, headers: dict[str, str]) -> int:
    return max(v["version"] for v in await _versions(api, headers)) + 1


async def _open(api: Api, headers: dict[str, str], case_ids: list[str]) -> dict[str, Any]:
    case = await api.open_dispute(headers)
    case_ids.append(case["id"])
    return case


async def _current_task(api: Api, headers: dict[str, str], case_id: str) -> dict[str, Any]:
    case = (await api.http.get(f"/cases/{case_id}", headers=headers)).json()
    [task] = [t for t in case["tasks"] if t["status"] != "done"]
    return task


async def _claim(api: Api, headers: dict[str, str], case_id: str) -> dict[str, Any]:
    task = await _current_task(api, headers, case_id)
    claimed = await api.http.post(f"/tasks/{task['id']}/claim", headers=headers)
    assert claimed.status_code == 200, claimed.text
    return claimed.json()


async def _complete(
    api: Api, headers: dict[str, str], case_id: str, outcome: str
) -> dict[str, Any]:
    """Complete the case's current task (claiming it first if need be); the case afterwards."""
    task = await _current_task(api, headers, case_id)
    if task["status"] == "open":
        task = await _claim(api, headers, case_id)
    done = await api.http.post(
        f"/tasks/{task['id']}/complete", json={"outcome": outcome}, headers=headers
    )
    assert done.status_code == 200, done.text
    return (await api.http.get(f"/cases/{case_id}", headers=headers)).json()


async def test_a_document_with_several_faults_gets_every_error_and_nothing_is_stored(
    api: Api,
) -> None:
    owner = api.user("sop_owner")
    before = await _versions(api, owner)
    document = _dispute(await _next_version(api, owner))
    triage = _step(document, "triage")
    triage["queue"] = "dispute-tier1"
    triage["sla"] = {"budget": "soon", "calendar": "ATLANTIS"}
    triage["transitions"]["accept"] = "investigte"
    _step(document, "lead_approval")["priority"] = 500

    response = await api.http.post("/sops/dispute/versions", json=document, headers=owner)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid" and body["message"].startswith("the template has 5 errors")
    errors = {e["path"]: e["message"] for e in body["details"]["errors"]}
    assert set(errors) == {
        "steps[0].queue",
        "steps[0].sla.budget",
        "steps[0].sla.calendar",
        "steps[0].transitions.accept",
        "steps[5].priority",  # lead_approval
    }
    assert errors["steps[0].transitions.accept"] == "unknown step 'investigte'"
    assert errors["steps[0].queue"].startswith("unknown queue 'dispute-tier1'")
    assert await _versions(api, owner) == before
    with Session(api.engine) as session:
        assert session.get(SopVersionRow, ("dispute", document["version"])) is None


async def test_the_name_in_the_path_must_be_the_documents(api: Api) -> None:
    owner = api.user("sop_owner")
    document = _dispute(await _next_version(api, owner))
    document["steps"][0]["queue"] = "nobody"
    response = await api.http.post("/sops/refunds/versions", json=document, headers=owner)
    assert response.status_code == 422, response.text
    paths = [e["path"] for e in response.json()["details"]["errors"]]
    assert paths == ["name", "steps[0].queue"]


async def test_only_sop_owners_and_admins_change_versions(api: Api) -> None:
    agent = api.user("agent", queues=[TIER1])
    lead = api.user("lead")
    for who in (agent, lead):
        refused = await api.http.post("/sops/dispute/versions/1/publish", headers=who)
        assert refused.status_code == 403, refused.text
        assert "sop_owner" in refused.json()["message"]
        drafted = await api.http.post("/sops/dispute/versions", json=_dispute(99), headers=who)
        assert drafted.status_code == 403, drafted.text
    assert (await api.http.get("/sops", headers=agent)).status_code == 403
    assert (await api.http.get("/sops")).status_code == 401
    for reader in ("lead", "auditor", "admin", "sop_owner"):
        listed = await api.http.get("/sops", headers=api.user(reader))
        assert listed.status_code == 200, listed.text
        dispute = next(s for s in listed.json() if s["name"] == "dispute")
        assert dispute["case_type"] == "dispute"


async def test_a_published_version_cannot_be_edited(api: Api) -> None:
    owner = api.user("sop_owner")
    shipped = (await api.http.get("/sops/dispute/versions/1", headers=owner)).json()
    document = _dispute(1)
    document["parameters"]["approval_threshold"] = 1
    edited = await api.http.post("/sops/dispute/versions", json=document, headers=owner)
    assert edited.status_code == 409, edited.text
    assert "dispute v1 already exists (published)" in edited.json()["message"]
    again = await api.http.post("/sops/dispute/versions/1/publish", headers=owner)
    assert again.status_code == 409 and "only a draft" in again.json()["message"]
    assert (await api.http.get("/sops/dispute/versions/1", headers=owner)).json() == shipped
    missing = await api.http.post("/sops/dispute/versions/404/publish", headers=owner)
    assert missing.status_code == 404 and "no v404" in missing.json()["message"]


async def test_running_cases_keep_their_version_and_retire_stops_only_new_cases(
    api: Api, case_ids: list[str]
) -> None:
    owner = api.user("sop_owner")
    agent = api.user("agent", queues=[TIER1])
    v2 = await _next_version(api, owner)
    on_v1 = await _open(api, agent, case_ids)
    assert on_v1["sop"]["version"] == SHIPPED

    drafted = await api.http.post(
        "/sops/dispute/versions", json=_with_evidence_review(v2), headers=owner
    )
    assert drafted.status_code == 201, drafted.text
    assert drafted.json()["status"] == "draft" and drafted.json()["published_at"] is None
    while_draft = await _open(api, agent, case_ids)
    assert while_draft["sop"]["version"] == SHIPPED  # a draft never reaches a case

    published = await api.http.post(f"/sops/dispute/versions/{v2}/publish", headers=owner)
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "published"
    assert published.json()["published_by"].startswith("sop_owner-")
    on_v2 = await _open(api, agent, case_ids)
    assert on_v2["sop"] == {
        "name": "dispute",
        "version": v2,
        "content_hash": published.json()["content_hash"],
    }

    # The v1 case still runs v1: its triage offers v1's outcomes and leads where v1 says.
    triage = await _claim(api, agent, on_v1["id"])
    assert triage["allowed_outcomes"] == V1_TRIAGE_OUTCOMES
    refused = await api.http.post(
        f"/tasks/{triage['id']}/complete", json={"outcome": "duplicate"}, headers=agent
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"]["allowed_outcomes"] == V1_TRIAGE_OUTCOMES
    assert (await _complete(api, agent, on_v1["id"], "accept"))["current_step"] == "investigate"
    assert (await _current_task(api, agent, on_v2["id"]))["allowed_outcomes"] == [
        *V1_TRIAGE_OUTCOMES,
        "duplicate",
    ]
    after_triage = await _complete(api, agent, on_v2["id"], "accept")
    assert after_triage["current_step"] == "review_evidence"

    retired = await api.http.post(f"/sops/dispute/versions/{v2}/retire", headers=owner)
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    after_retire = await _open(api, agent, case_ids)
    assert after_retire["sop"]["version"] == SHIPPED
    # The case already on the retired version carries on with it.
    resumed = await _complete(api, agent, on_v2["id"], "complete")
    assert resumed["current_step"] == "investigate" and resumed["sop"]["version"] == v2

    listing = (await api.http.get("/sops", headers=owner)).json()
    latest = {s["name"]: s["latest_published"] for s in listing}
    assert latest["dispute"] == SHIPPED
    assert await _pinned(api, owner, SHIPPED) == [
        on_v1["id"],
        while_draft["id"],
        after_retire["id"],
    ]
    assert await _pinned(api, owner, v2) == [on_v2["id"]]


async def _pinned(api: Api, headers: dict[str, str], version: int) -> list[str]:
    response = await api.http.get(f"/sops/dispute/versions/{version}/cases", headers=headers)
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()]


async def test_the_diff_reports_a_changed_threshold_and_an_added_step(api: Api) -> None:
    owner = api.user("admin")
    version = await _next_version(api, owner)
    first = await api.http.post(
        "/sops/dispute/versions", json=_with_evidence_review(version), headers=owner
    )
    assert first.status_code == 201, first.text
    # A draft may be replaced while it is a draft.
    document = _with_evidence_review(version)
    document["parameters"]["approval_threshold"] = 750
    replaced = await api.http.post("/sops/dispute/versions", json=document, headers=owner)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["content_hash"] != first.json()["content_hash"]

    auditor = api.user("auditor")
    response = await api.http.get(
        "/sops/dispute/diff", params={"from": 1, "to": version}, headers=auditor
    )

    assert response.status_code == 200, response.text
    diff = response.json()
    assert diff["from_version"] == 1 and diff["to_version"] == version
    changes = {(c["path"], c["change"]): c for c in diff["changes"]}
    threshold = changes["parameters.approval_threshold", "changed"]
    assert (threshold["before"], threshold["after"]) == (1000, 750)
    added = changes["steps.review_evidence", "added"]
    assert added["before"] is None and added["after"]["queue"] == TIER1
    assert "  ~ parameters.approval_threshold: 1000 -> 750" in diff["text"].splitlines()
    unknown = await api.http.get(
        "/sops/dispute/diff", params={"from": 1, "to": 999}, headers=auditor
    )
    assert unknown.status_code == 404, unknown.text


# ------------------------------------------------------------------- registry rules


@pytest.fixture
def session(sqlite_engine: Engine) -> Iterator[Session]:
    with session_scope(sqlite_engine) as session:
        yield session


def test_version_numbers_only_grow_and_only_drafts_publish(session: Session) -> None:
    create_draft(session, _dispute(SHIPPED + 1), actor="sam")
    create_draft(session, _dispute(SHIPPED + 3), actor="sam")
    with pytest.raises(
        SopConflictError, match=f"already has v{SHIPPED + 3}: number a new version {SHIPPED + 4}"
    ):
        create_draft(session, _dispute(SHIPPED + 2), actor="sam")
    publish(session, "dispute", SHIPPED + 3, actor="sam")
    with pytest.raises(SopConflictError, match=f"v{SHIPPED + 3} is already released"):
        publish(session, "dispute", SHIPPED + 1, actor="sam")
    with pytest.raises(VersionExistsError, match=rf"v{SHIPPED + 3} already exists \(published\)"):
        create_draft(session, _dispute(SHIPPED + 3), actor="sam")
    with pytest.raises(SopConflictError, match="only a published version can be retired"):
        retire(session, "dispute", SHIPPED + 1)


def test_retiring_the_latest_brings_back_the_previous_and_then_none(session: Session) -> None:
    new = SHIPPED + 1
    create_draft(session, _dispute(new), actor="sam")
    publish(session, "dispute", new, actor="sam")
    assert latest_published(session, "dispute").version == new
    for version in range(new, 1, -1):
        retire(session, "dispute", version)
        assert latest_published(session, "dispute").version == version - 1
    retire(session, "dispute", 1)
    with pytest.raises(NoPublishedVersionError):
        latest_published(session, "dispute")
    with pytest.raises(SopConflictError, match="only a draft can be published"):
        publish(session, "dispute", new, actor="sam")


def test_one_sop_name_runs_one_case_type(session: Session) -> None:
    other_name = {**_dispute(1), "name": "dispute-eu"}
    with pytest.raises(SopConflictError, match="run by SOP 'dispute'"):
        create_draft(session, other_name, actor="sam")
    other_type = {**_dispute(SHIPPED + 1), "case_type": "collection"}
    with pytest.raises(SopConflictError, match="runs case type 'dispute'"):
        create_draft(session, other_type, actor="sam")


def test_a_draft_that_became_invalid_is_not_published(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_draft(session, _dispute(SHIPPED + 1), actor="sam")
    monkeypatch.setattr(validation, "known_queue_patterns", lambda: ("collections-*",))
    with pytest.raises(InvalidTemplateError, match="unknown queue 'disputes-tier1'"):
        publish(session, "dispute", SHIPPED + 1, actor="sam")
    query = select(SopVersionRow.status).where(
        SopVersionRow.name == "dispute", SopVersionRow.version == SHIPPED + 1
    )
    status = session.exec(query).one()
    assert status == registry.DRAFT


# ------------------------------------------------------------------------------ CLI


def test_cli_publishes_then_diffs_two_stored_versions(tmp_path: Path) -> None:
    new = SHIPPED + 1
    path = tmp_path / f"dispute.v{new}.yaml"
    path.write_text(yaml.safe_dump(_with_evidence_review(new)))
    data_dir = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()

    published = runner.invoke(cli, ["sop", "publish", str(path), *data_dir])
    assert published.exit_code == 0, published.output
    diffed = runner.invoke(cli, ["sop", "diff", "dispute", str(SHIPPED), str(new), *data_dir])

    assert diffed.exit_code == 0, diffed.output
    lines = diffed.output.splitlines()
    assert lines[0] == f"dispute v{SHIPPED} -> v{new}: 5 changes"
    assert "  ~ parameters.approval_threshold: 1000 -> 500" in lines
    assert any(line.startswith("  + steps.review_evidence: {") for line in lines)
    missing = runner.invoke(cli, ["sop", "diff", "dispute", "1", "9", *data_dir])
    versions = ", ".join(str(v) for v in range(1, new + 1))
    assert missing.exit_code == 1 and f"dispute has no v9 (versions: {versions})" in missing.output
