"""Publishing with a hypercare window over the API (real dev server and worker, SQLite and
PostgreSQL): bad terms are 422s naming the field and publish nothing; a window is shown on
the version, pinned into the cases opened in it, and shown with the hypercare report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from domain.case_models import Role
from tests.harness import Api, shipped_document

pytestmark = pytest.mark.asyncio(loop_scope="session")

NEW = int(shipped_document("dispute")["version"]) + 1
VERSION = f"/sops/dispute/versions/{NEW}"


async def _draft(api: Api, headers: dict[str, str]) -> None:
    document = {**shipped_document("dispute"), "version": NEW}
    response = await api.http.post("/sops/dispute/versions", json=document, headers=headers)
    assert response.status_code in (200, 201), response.text


async def _status(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    response = await api.http.get(VERSION, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hypercare": {"days": 0, "warn_factor": 0.5}}, "hypercare.days"),
        ({"hypercare": {"days": 91, "warn_factor": 0.5}}, "hypercare.days"),
        ({"hypercare": {"days": 7, "warn_factor": 0}}, "hypercare.warn_factor"),
        ({"hypercare": {"days": 7, "warn_factor": 1.5}}, "hypercare.warn_factor"),
        ({"hypercare": {"days": 7}}, "hypercare.warn_factor"),
        ({"hypercare": {"days": 7, "warn_factor": 0.5, "owner": "x"}}, "hypercare.owner"),
    ],
)
async def test_bad_terms_are_refused_naming_the_field_and_nothing_is_published(
    api: Api, body: dict[str, Any], field: str
) -> None:
    owner = api.user(Role.SOP_OWNER, email="olga@o2c.test")
    await _draft(api, owner)
    response = await api.http.post(f"{VERSION}/publish", json=body, headers=owner)
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["details"]["fields"]] == [field]
    assert field in response.json()["message"]
    assert (await _status(api, owner))["status"] == "draft"


async def test_a_publisher_without_an_address_is_refused_on_the_hypercare_field(
    api: Api,
) -> None:
    owner = api.user(Role.SOP_OWNER)  # no email: breach notices could reach no one
    await _draft(api, owner)
    body = {"hypercare": {"days": 7, "warn_factor": 0.5}}
    response = await api.http.post(f"{VERSION}/publish", json=body, headers=owner)
    assert response.status_code == 422, response.text
    assert response.json()["details"] == {"field": "hypercare"}
    assert response.json()["message"].startswith("hypercare: user ")
    version = await _status(api, owner)
    assert (version["status"], version["hypercare"]) == ("draft", None)


async def test_a_window_is_shown_pinned_into_new_cases_and_reported(api: Api) -> None:
    owner = api.user(Role.SOP_OWNER, email="olga@o2c.test")
    await _draft(api, owner)
    body = {"hypercare": {"days": 7, "warn_factor": 0.5}}
    response = await api.http.post(f"{VERSION}/publish", json=body, headers=owner)
    assert response.status_code == 200, response.text
    shown = (await _status(api, owner))["hypercare"]
    assert (shown["days"], shown["warn_factor"]) == (7, 0.5)
    assert shown["owner"].startswith("sop_owner-") and "owner_email" not in shown

    case = await api.open_dispute(api.user(Role.LEAD))
    assert case["sop"]["version"] == NEW
    [entry] = [e for e in case["history"] if e["event"] == "hypercare"]
    until = datetime.fromisoformat(shown["until"])
    assert datetime.fromisoformat(entry["detail"]["until"]) == until
    assert entry["detail"]["warn_factor"] == 0.5

    admin = api.user(Role.ADMIN)
    report = await api.http.get(
        "/reports/hypercare", params={"sop": "dispute", "version": NEW}, headers=admin
    )
    assert report.status_code == 200, report.text
    assert datetime.fromisoformat(report.json()["window"]["until"]) == until
    assert report.json()["against"] == NEW - 1
    unknown = await api.http.get(
        "/reports/hypercare", params={"sop": "dispute", "version": 99}, headers=admin
    )
    assert unknown.status_code == 404, unknown.text
