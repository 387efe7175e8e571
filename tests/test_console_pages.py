"""What the console's forms do besides the browser journey (issue 15), over the real app:
an SOP owner validates an uploaded YAML (every error at its path, nothing stored), saves,
diffs and publishes it; an agent pauses and resumes the SLA and escalates by hand; a lead
reassigns from the board; an auditor sees the case as of an instant and downloads the
evidence; a lead may not (the policy's audit export); the reports page shows the JSON API's
numbers in the caller's vendor scope, with each report's CSV."""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from html.parser import HTMLParser
from typing import Any

import pytest
import yaml

from api.console.routes_reports import cell, column_label
from domain.case_models import Role
from reports.kpis import KPIS
from tests.harness import Api, eventually, shipped_document
from tests.test_console_access import TIER1, _cookie, _csrf, _open_task
from tests.test_facts import _work_week

in_session = pytest.mark.asyncio(loop_scope="session")


async def _post(api: Api, headers: dict[str, str], url: str, page: str, **data: Any) -> Any:
    csrf = await _csrf(api, headers, page)
    return await api.http.post(url, data={"csrf": csrf, **data}, headers=_cookie(headers))


async def _upload(api: Api, owner: dict[str, str], document: dict[str, Any], intent: str) -> Any:
    csrf = await _csrf(api, owner, "/console/sops/dispute")
    return await api.http.post(
        "/console/sops/dispute/upload",
        data={"csrf": csrf, "intent": intent},
        files={"file": ("dispute.yaml", yaml.safe_dump(document).encode(), "application/yaml")},
        headers=_cookie(owner),
    )


async def _versions(api: Api, owner: dict[str, str]) -> list[dict[str, Any]]:
    return (await api.http.get("/sops/dispute/versions", headers=owner)).json()


@in_session
async def test_an_sop_owner_validates_saves_diffs_and_publishes_an_upload(api: Api) -> None:
    owner = api.user(Role.SOP_OWNER)
    before = await _versions(api, owner)
    document = shipped_document("dispute")
    document["version"] = max(v["version"] for v in before) + 1
    broken = {**document, "steps": [dict(s) for s in document["steps"]]}
    broken["steps"][0]["queue"] = "dispute-tier1"
    broken["steps"][0]["sla"] = {"budget": "soon"}

    for intent in ("validate", "save"):
        refused = await _upload(api, owner, broken, intent)
        assert refused.status_code == 422, refused.text
        assert "2 errors, nothing saved" in refused.text
        assert "<code>steps[0].queue</code>" in refused.text
        assert "<code>steps[0].sla.budget</code>" in refused.text
        assert "unknown queue &#39;dispute-tier1&#39;" in refused.text
    assert await _versions(api, owner) == before

    valid = await _upload(api, owner, document, "validate")
    assert valid.status_code == 200 and "valid, no errors (not saved)" in valid.text
    assert await _versions(api, owner) == before
    saved = await _upload(api, owner, document, "save")
    assert f"saved as draft v{document['version']}" in saved.text
    new = f"/console/sops/dispute/versions/{document['version']}"
    published = await _post(api, owner, f"{new}/publish", "/console/sops/dispute")
    assert published.status_code == 303, published.text
    assert [v["status"] for v in await _versions(api, owner)][-1] == "published"

    diff = await api.http.get(
        "/console/sops/dispute/diff",
        params={"from_version": document["version"] - 1, "to_version": document["version"]},
        headers=_cookie(owner),
    )
    assert diff.status_code == 200 and "The two versions side by side" in diff.text
    dry_run = await _post(api, owner, f"{new}/migrations", "/console/sops/dispute")
    assert dry_run.status_code == 200, dry_run.text
    assert f"Migration to v{document['version']} (dry run)" in dry_run.text
    retired = await _post(api, owner, f"{new}/retire", "/console/sops/dispute")
    assert retired.status_code == 303
    assert [v["status"] for v in await _versions(api, owner)][-1] == "retired"


@in_session
async def test_an_sop_owner_publishes_with_a_hypercare_window_from_the_console(api: Api) -> None:
    owner = api.user(Role.SOP_OWNER, email="olga@o2c.test")
    document = shipped_document("dispute")
    document["version"] = max(v["version"] for v in await _versions(api, owner)) + 1
    assert (await _upload(api, owner, document, "save")).status_code == 200
    new = f"/console/sops/dispute/versions/{document['version']}"

    for days, factor, field in (
        ("0", "0.5", "days"),
        ("10", "1.5", "warn_factor"),
        ("", "0.5", "hypercare_days"),
    ):
        refused = await _post(
            api, owner, f"{new}/publish", "/console/sops/dispute",
            hypercare_days=days, warn_factor=factor,
        )  # fmt: skip
        assert refused.status_code == 422 and field in refused.text, (days, factor)
        assert (await _versions(api, owner))[-1]["status"] == "draft"  # nothing published

    published = await _post(
        api,
        owner,
        f"{new}/publish",
        "/console/sops/dispute",
        hypercare_days="10",
        warn_factor="0.5",
    )
    assert published.status_code == 303, published.text
    version = (await _versions(api, owner))[-1]
    assert version["status"] == "published"
    assert version["hypercare"]["days"] == 10 and version["hypercare"]["warn_factor"] == 0.5
    # The file's other tests open cases on the shipped version, as they would without this one.
    retired = await _post(api, owner, f"{new}/retire", "/console/sops/dispute")
    assert retired.status_code == 303


@in_session
async def test_an_agent_pauses_resumes_and_escalates_and_a_lead_reassigns(api: Api) -> None:
    agent = api.user(Role.AGENT, queues=[TIER1])
    lead = api.user(Role.LEAD, queues=["disputes-leads"])
    task = await _open_task(api, agent)
    page = f"/console/tasks/{task['id']}"
    assert (await _post(api, agent, f"{page}/claim", page)).status_code == 303
    paused = await _post(api, agent, f"{page}/pause", page, reason="awaiting_customer")
    assert paused.status_code == 303, paused.text
    shown = await api.http.get(page, headers=_cookie(agent))
    assert "paused: awaiting_customer" in shown.text and "Resume SLA" in shown.text
    assert (await _post(api, agent, f"{page}/resume", page)).status_code == 303
    assert "Pause SLA" in (await api.http.get(page, headers=_cookie(agent))).text

    empty = await _post(api, agent, f"/console/cases/{task['case_id']}/escalate", page, reason="")
    assert empty.status_code == 422 and "reason" in empty.text
    raised = await _post(
        api,
        agent,
        f"/console/cases/{task['case_id']}/escalate",
        page,
        reason="customer threatens to withhold payment",
        task_id=task["id"],
    )
    assert raised.status_code == 200 and "opened: a lead will pick it up" in raised.text
    escalation = re.search(r"Escalation (\S+) opened", raised.text).group(1)  # type: ignore[union-attr]

    async def board() -> str:
        return (await api.http.get("/console/board", headers=_cookie(lead))).text

    # The escalation projects itself onto the board a moment after it starts.
    shown_board = await eventually(board, lambda text: escalation in text)
    assert "customer threatens" in shown_board
    moved = await _post(
        api, lead, f"/console/escalations/{escalation}/reassign", "/console/board",
        to_queue=TIER1, note="back to the floor",
    )  # fmt: skip
    assert moved.status_code == 303, moved.text
    case = (await api.http.get(f"/cases/{task['case_id']}", headers=lead)).json()
    assert case["tasks"][0]["status"] == "open" and case["tasks"][0]["assignee"] is None
    unknown = await _post(api, lead, f"/console/escalations/{escalation}/explode", "/console/board")
    assert unknown.status_code == 404


@in_session
async def test_an_auditor_sees_the_case_as_of_an_instant_and_downloads_evidence(api: Api) -> None:
    agent = api.user(Role.AGENT, queues=[TIER1])
    auditor = api.user(Role.AUDITOR)
    lead = api.user(Role.LEAD)
    task = await _open_task(api, agent)
    case_id = task["case_id"]

    async def timeline() -> list[dict[str, Any]]:
        return (await api.http.get(f"/cases/{case_id}/history", headers=auditor)).json()

    entries = await eventually(timeline, lambda e: any(x["event"] == "task_opened" for x in e))
    first = entries[0]["at"]
    state = await api.http.get(
        f"/console/audit/{case_id}/state",
        params={"as_of": first},
        headers={**_cookie(auditor), "HX-Request": "true"},
    )
    assert state.status_code == 200, state.text
    assert "As of" in state.text and "<html" not in state.text  # the fragment htmx swaps in
    bad = await api.http.get(
        f"/console/audit/{case_id}/state", params={"as_of": "yesterday"}, headers=_cookie(auditor)
    )
    assert bad.status_code == 422 and "as_of" in bad.text

    export = await api.http.get(f"/console/audit/{case_id}/export", headers=_cookie(auditor))
    assert export.status_code == 200
    assert export.headers["content-disposition"] == f'attachment; filename="evidence-{case_id}.zip"'
    names = zipfile.ZipFile(io.BytesIO(export.content)).namelist()
    assert f"{case_id}/manifest.json" in names and f"{case_id}/history.json" in names
    refused = await api.http.get(f"/console/audit/{case_id}/export", headers=_cookie(lead))
    assert refused.status_code == 403


WEEK = {"period": "week", "at": "2026-11-23"}


@pytest.fixture(scope="module")
def report_vendors(api: Api) -> tuple[str, str]:
    """Two vendors' weeks of facts, each the known week of tests/test_facts.py."""
    mine, other = (f"v-{uuid.uuid4().hex[:6]}" for _ in range(2))
    _work_week(api.engine, mine)
    _work_week(api.engine, other)
    return mine, other


class ReportTables(HTMLParser):
    """The cells of each report section's table (`id="report-NAME"`), header row first."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._section: str | None = None
        self._row: list[str] | None = None
        self._cell: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id") or ""
        if tag == "section" and ident.startswith("report-"):
            self._section = ident.removeprefix("report-")
            self.tables[self._section] = []
        elif tag == "tr" and self._section:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._section and self._row is not None:
            self.tables[self._section].append(self._row)
            self._row = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data


async def _page_and_api(
    api: Api, headers: dict[str, str], **params: Any
) -> tuple[dict[str, list[list[str]]], dict[str, list[list[str]]], str]:
    """Each report as the console's page shows it and as the JSON API answers it."""
    page = await api.http.get("/console/reports", params=params, headers=_cookie(headers))
    assert page.status_code == 200, page.text
    answered = {}
    for name in KPIS:
        body = (await api.http.get(f"/reports/{name}", params=params, headers=headers)).json()
        rows = [[cell(row[c]) for c in body["columns"]] for row in body["rows"]]
        answered[name] = [[column_label(c) for c in body["columns"]], *rows] if rows else []
    return ReportTables(page.text).tables, answered, page.text


@in_session
async def test_the_reports_page_shows_the_apis_numbers_in_a_leads_vendor(
    api: Api, report_vendors: tuple[str, str]
) -> None:
    mine, other = report_vendors
    lead = api.user(Role.LEAD, vendor=mine)
    shown, answered, page = await _page_and_api(api, lead, **WEEK)
    assert {name: shown[name] for name in KPIS} == answered
    fell_due = shown["sla"][0].index("fell due")
    assert shown["sla"][1][fell_due] == "6"  # one vendor's week, not both
    assert "report-ledger" not in page  # the ledger is not one vendor's
    assert 'name="vendor"' not in page and f"{mine} (yours)" in page
    # Three charts inline as SVG, text kept as text: the agents chart names ana's queue.
    assert page.count('<svg role="img"') == 3 and "ana (disputes-tier1)" in page
    assert "cdn" not in page.lower() and '<script src="http' not in page

    by_step, answered_by_step, _ = await _page_and_api(api, lead, **WEEK, group_by="step")
    assert by_step["sla"] == answered_by_step["sla"] and len(by_step["sla"]) > 2

    link = re.search(r'href="(/console/reports/throughput\.csv\?[^"]+)"', page)
    assert link, "no CSV link for throughput"
    download = await api.http.get(link.group(1).replace("&amp;", "&"), headers=_cookie(lead))
    over_api = await api.http.get(
        "/reports/throughput", params=WEEK, headers={**lead, "Accept": "text/csv"}
    )
    assert download.status_code == 200 and download.text == over_api.text
    assert download.headers["content-disposition"] == over_api.headers["content-disposition"]

    theirs = await api.http.get(
        "/console/reports", params={**WEEK, "vendor": other}, headers=_cookie(lead)
    )
    refused = await api.http.get("/reports/sla", params={**WEEK, "vendor": other}, headers=lead)
    assert theirs.status_code == refused.status_code == 403
    assert other in theirs.text


@in_session
async def test_an_auditor_reads_every_vendor_and_the_ledger_and_bad_filters_are_named(
    api: Api, report_vendors: tuple[str, str]
) -> None:
    _, other = report_vendors
    auditor = api.user(Role.AUDITOR)
    shown, answered, _ = await _page_and_api(api, auditor, **WEEK, vendor=other)
    assert {name: shown[name] for name in KPIS} == answered
    assert shown["sla"][1][shown["sla"][0].index("fell due")] == "6"

    ledger = await api.http.get(
        "/reports/ledger", params={**WEEK, "currency": "EUR"}, headers=auditor
    )
    assert ledger.status_code == 200, ledger.text
    measures = [[column_label(k), cell(v)] for k, v in ledger.json().items()]
    assert shown["ledger"] == [["Measure", "Value"], *measures]

    for params, field in (({"at": "yesterday"}, "at"), ({"group_by": "colour"}, "group_by")):
        bad = await api.http.get("/console/reports", params=params, headers=_cookie(auditor))
        assert bad.status_code == 422 and field in bad.text, bad.text
