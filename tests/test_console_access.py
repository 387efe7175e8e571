"""The console admits and refuses exactly as the JSON API does (issue 15), over the real
app, Temporal dev server and both databases: sign-in into an HttpOnly SameSite cookie, a
CSRF token on every form, another vendor's agent getting the API's 404/403, a 409 naming
the holder. Plain HTTP; the browser journey is tests/test_console_browser.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from api.console.session import COOKIE
from domain.case_models import Role
from tests.harness import Api, eventually

in_session = pytest.mark.asyncio(loop_scope="session")
TIER1 = "disputes-tier1"
CSRF_INPUT = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def _cookie(headers: dict[str, str]) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={_token(headers)}"}


async def _csrf(api: Api, headers: dict[str, str], page: str) -> str:
    response = await api.http.get(page, headers=_cookie(headers))
    assert response.status_code == 200, response.text
    match = CSRF_INPUT.search(response.text)
    assert match, "the page carries no CSRF token"
    return match.group(1)


async def _open_task(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    case = await api.open_dispute(headers)

    async def probe() -> list[dict[str, Any]]:
        response = await api.http.get("/tasks", params={"case_id": case["id"]}, headers=headers)
        return response.json()

    [task] = await eventually(probe, lambda tasks: len(tasks) == 1)
    return task


async def _task_status(api: Api, headers: dict[str, str], task: dict[str, Any]) -> str:
    case = (await api.http.get(f"/cases/{task['case_id']}", headers=headers)).json()
    return next(t["status"] for t in case["tasks"] if t["id"] == task["id"])


@in_session
async def test_sign_in_sets_a_strict_http_only_cookie_and_refuses_a_bad_token(api: Api) -> None:
    agent = api.user(Role.AGENT, queues=[TIER1])
    anonymous = await api.http.get("/console/inbox")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/console/login?next=/console/inbox"

    # A sign-in posted from elsewhere (no nonce of the sign-in page) is refused.
    foreign = await api.http.post("/console/login", data={"token": _token(agent)})
    assert foreign.status_code == 403 and COOKIE not in foreign.headers.get("set-cookie", "")

    page = await api.http.get("/console/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    bad = await api.http.post("/console/login", data={"token": "cb_not-a-token", "nonce": nonce})
    assert bad.status_code == 401 and "invalid or revoked token" in bad.text
    assert f"{COOKIE}=" not in bad.headers.get("set-cookie", "")

    nonce = re.search(r'name="nonce" value="([^"]+)"', bad.text).group(1)  # type: ignore[union-attr]
    good = await api.http.post(
        "/console/login",
        data={"token": _token(agent), "next": "https://evil.test/", "nonce": nonce},
    )
    assert good.status_code == 303 and good.headers["location"] == "/console/inbox"
    [cookie] = [c.lower() for c in good.headers.get_list("set-cookie") if c.startswith(COOKIE)]
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert "secure" not in cookie  # plain http here; https sets it
    api.http.cookies.clear()


@in_session
async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(api: Api) -> None:
    agent = api.user(Role.AGENT, queues=[TIER1])
    task = await _open_task(api, agent)
    page = f"/console/tasks/{task['id']}"
    claim = f"{page}/claim"

    missing = await api.http.post(claim, headers=_cookie(agent))
    assert missing.status_code == 403 and "CSRF" in missing.text
    other = api.user(Role.AGENT, queues=[TIER1])  # a token of another session does not fit
    wrong = await api.http.post(
        claim, data={"csrf": await _csrf(api, other, "/console/inbox")}, headers=_cookie(agent)
    )
    assert wrong.status_code == 403
    assert await _task_status(api, agent, task) == "open"

    right = await api.http.post(
        claim, data={"csrf": await _csrf(api, agent, page)}, headers=_cookie(agent)
    )
    assert right.status_code == 303, right.text
    assert await _task_status(api, agent, task) == "claimed"


@in_session
async def test_another_vendors_agent_gets_what_the_api_answers(api: Api) -> None:
    owner = api.user(Role.AGENT, vendor="acme", queues=[TIER1])
    stranger = api.user(Role.AGENT, vendor="globex", queues=[TIER1])
    task = await _open_task(api, owner)
    csrf = await _csrf(api, stranger, "/console/inbox")

    over_api = await api.http.get(f"/cases/{task['case_id']}", headers=stranger)
    page = await api.http.get(f"/console/tasks/{task['id']}", headers=_cookie(stranger))
    assert over_api.status_code == page.status_code == 404
    assert f"case {task['case_id']} not found" in page.text

    claimed_over_api = await api.http.post(f"/tasks/{task['id']}/claim", headers=stranger)
    claimed_here = await api.http.post(
        f"/console/tasks/{task['id']}/claim", data={"csrf": csrf}, headers=_cookie(stranger)
    )
    assert claimed_here.status_code == claimed_over_api.status_code == 404
    # The inbox lists none of the other vendor's work.
    inbox = await api.http.get("/console/inbox", headers=_cookie(stranger))
    assert task["id"] not in inbox.text

    board_over_api = await api.http.get("/escalations", headers=stranger)
    board = await api.http.get("/console/board", headers=_cookie(stranger))
    assert board.status_code == board_over_api.status_code == 403
    sops = await api.http.get("/console/sops", headers=_cookie(stranger))
    assert sops.status_code == (await api.http.get("/sops", headers=stranger)).status_code == 403
    assert await _task_status(api, owner, task) == "open"


@in_session
async def test_a_taken_task_says_who_holds_it(api: Api) -> None:
    ana = api.user(Role.AGENT, vendor="acme", queues=[TIER1])
    bob = api.user(Role.AGENT, vendor="acme", queues=[TIER1])
    task = await _open_task(api, ana)
    assert (await api.http.post(f"/tasks/{task['id']}/claim", headers=ana)).status_code == 200
    holder = (await api.http.get("/tasks", params={"case_id": task["case_id"]}, headers=ana)).json()
    page = f"/console/tasks/{task['id']}"
    conflict = await api.http.post(
        f"{page}/claim", data={"csrf": await _csrf(api, bob, page)}, headers=_cookie(bob)
    )
    assert conflict.status_code == 409
    assert f"claimed by {holder[0]['assignee']}" in conflict.text


@in_session
async def test_reports_are_refused_to_agents_and_sop_owners_as_over_the_api(api: Api) -> None:
    for role in (Role.AGENT, Role.SOP_OWNER):
        user = api.user(role, vendor="acme", queues=[TIER1])
        over_api = await api.http.get("/reports/sla", headers=user)
        page = await api.http.get("/console/reports", headers=_cookie(user))
        download = await api.http.get("/console/reports/sla.csv", headers=_cookie(user))
        assert page.status_code == download.status_code == over_api.status_code == 403
        assert over_api.json()["message"] in page.text
        assert "Sign out" in page.text  # the refusal is a page of the session, whose
        assert '<a href="/console/reports"' not in page.text  # navigation has no Reports
    lead = api.user(Role.LEAD, vendor="acme")
    board = await api.http.get("/console/board", headers=_cookie(lead))
    assert '<a href="/console/reports"' in board.text  # the nav link, for those it serves
