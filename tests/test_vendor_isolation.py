"""Vendor isolation fails closed (issue 11): each finding of the security review, reproduced.

An agent needs a vendor (or is made cross-vendor); vendor-less cases stay with users not
bound to a vendor unless CASEBOOK_VENDORLESS_CASES=shared; raising a case checks vendor
and queue and answers with the escalation only; SOP owners and integrations do not read
other people's cases; a lead cannot hand a task to another vendor's agent.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from cli.main import app as cli
from domain.case_models import Role
from store.db import make_engine, session_scope
from store.tables import UserRow
from store.users import VendorRequiredError, create_user, hash_token
from tests.harness import DISPUTE, Api, eventually, running_api

in_session = pytest.mark.asyncio(loop_scope="session")
TIER1 = "disputes-tier1"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shared_api(dev_server: WorkflowEnvironment, engine: Engine) -> AsyncIterator[Api]:
    """The same database under CASEBOOK_VENDORLESS_CASES=shared."""
    async with running_api(dev_server.client, engine, vendorless_cases="shared") as api:
        yield api


def _customer() -> str:
    return f"CUST-{uuid.uuid4().hex[:6]}"


async def _task(api: Api, headers: dict[str, str], case_id: str) -> dict[str, Any]:
    async def probe() -> list[dict[str, Any]]:
        response = await api.http.get("/tasks", params={"case_id": case_id}, headers=headers)
        return response.json() if response.status_code == 200 else []

    [task] = await eventually(probe, lambda tasks: len(tasks) == 1)
    return task


async def _listed(api: Api, headers: dict[str, str], customer: str) -> list[str]:
    response = await api.http.get("/cases", params={"customer_id": customer}, headers=headers)
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()]


def test_user_add_refuses_an_agent_without_a_vendor(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["user", "add", "--role", "agent", "--queue", TIER1, "--data-dir", str(tmp_path)]
    refused = runner.invoke(cli, [*base[:2], "ana", *base[2:]])
    assert refused.exit_code == 1
    assert "needs a vendor" in refused.output and "--cross-vendor" in refused.output
    assert "cb_" not in refused.output  # no token was made
    crossing = runner.invoke(cli, [*base[:2], "cid", *base[2:], "--cross-vendor"])
    assert crossing.exit_code == 0, crossing.output
    vendored = runner.invoke(cli, [*base[:2], "vic", *base[2:], "--vendor", "acme"])
    assert vendored.exit_code == 0, vendored.output
    engine = make_engine(f"sqlite:///{tmp_path / 'casebook.db'}")  # what the CLI wrote
    with session_scope(engine) as session, pytest.raises(VendorRequiredError):
        create_user(session, name="nov", role=Role.AGENT, vendor=None, queues=[TIER1])
    with session_scope(engine) as session:
        names = {u.name for u in session.exec(select(UserRow)).all()}
    engine.dispose()
    assert names == {"cid", "vic"}


@in_session
async def test_an_existing_agent_without_a_vendor_sees_and_works_nothing(api: Api) -> None:
    """One created before the rule (written straight into the table) fails closed."""
    token = f"cb_legacy-{uuid.uuid4().hex}"
    with session_scope(api.engine) as session:
        session.add(
            UserRow(
                name=f"legacy-{uuid.uuid4().hex[:6]}",
                role="agent",
                queues=[TIER1],
                token_hash=hash_token(token),
                created_at=datetime.now(UTC),
            )
        )
    legacy = {"Authorization": f"Bearer {token}"}
    lead, acme = api.user("lead"), api.user("agent", vendor="acme", queues=[TIER1])
    customer = _customer()
    shared = await api.open_dispute(lead, customer_id=customer)
    owned = await api.open_dispute(acme, customer_id=customer)
    assert await _listed(api, legacy, customer) == []
    for case in (shared, owned):
        assert (await api.http.get(f"/cases/{case['id']}", headers=legacy)).status_code == 404
        task = await _task(api, lead, case["id"])
        claim = await api.http.post(f"/tasks/{task['id']}/claim", headers=legacy)
        assert claim.status_code == 404, claim.text
    inbox = await api.http.get("/tasks", params={"queue": TIER1}, headers=legacy)
    assert inbox.json() == []
    next_one = await api.http.post(f"/queues/{TIER1}/claim-next", headers=legacy)
    assert next_one.status_code == 204
    opened = await api.http.post("/cases", json=DISPUTE, headers=legacy)
    assert opened.status_code == 403 and "vendor" in opened.json()["message"]


@in_session
async def test_a_vendorless_case_is_hidden_from_vendor_agents_by_default(
    api: Api, shared_api: Api
) -> None:
    lead = api.user("lead")
    acme = api.user("agent", vendor="acme", queues=[TIER1])
    acme_lead = api.user("lead", vendor="acme")
    crossing = api.user("agent", queues=[TIER1], cross_vendor=True)
    customer = _customer()
    case = await api.open_dispute(lead, customer_id=customer)
    assert case["vendor"] is None
    task = await _task(api, lead, case["id"])
    for vendor_bound in (acme, acme_lead):
        assert (await api.http.get(f"/cases/{case['id']}", headers=vendor_bound)).status_code == 404
        assert await _listed(api, vendor_bound, customer) == []
        mine = await api.http.get("/tasks", params={"case_id": case["id"]}, headers=vendor_bound)
        assert mine.json() == []
    claim = await api.http.post(f"/tasks/{task['id']}/claim", headers=acme)
    assert claim.status_code == 404, claim.text
    unchanged = await _task(api, lead, case["id"])
    assert unchanged["status"] == "open" and unchanged["assignee"] is None

    # `shared`: the same case is every vendor's work.
    assert await _listed(shared_api, acme, customer) == [case["id"]]
    shared_claim = await shared_api.http.post(f"/tasks/{task['id']}/claim", headers=acme)
    assert shared_claim.status_code == 200, shared_claim.text
    released = await shared_api.http.post(f"/tasks/{task['id']}/release", headers=acme)
    assert released.status_code == 200, released.text
    # A cross-vendor agent works it under the default too.
    assert (await api.http.post(f"/tasks/{task['id']}/claim", headers=crossing)).status_code == 200


@in_session
async def test_escalate_checks_vendor_and_queue_and_answers_without_the_case(api: Api) -> None:
    acme = api.user("agent", vendor="acme", queues=[TIER1])
    globex = api.user("agent", vendor="globex", queues=[TIER1])
    acme_elsewhere = api.user("agent", vendor="acme", queues=["collections-tier1"])
    case = await api.open_dispute(acme, customer_id=_customer())
    task = await _task(api, acme, case["id"])
    body = {"reason": "the customer threatens to churn", "task_id": task["id"]}
    url = f"/cases/{case['id']}/escalate"
    foreign = await api.http.post(url, json=body, headers=globex)
    assert foreign.status_code == 404, foreign.text
    for secret in (case["customer_id"], "1250.00", "acme", "ap@customer.example"):
        assert secret not in foreign.text
    no_task = await api.http.post(url, json={"reason": "why not"}, headers=globex)
    assert no_task.status_code == 404
    elsewhere = await api.http.post(url, json=body, headers=acme_elsewhere)
    assert elsewhere.status_code == 403 and TIER1 in elsewhere.json()["message"]
    lead = api.user("lead")
    untouched = (await api.http.get(f"/cases/{case['id']}", headers=lead)).json()
    assert untouched["escalations"] == []

    raised = await api.http.post(url, json=body, headers=acme)
    assert raised.status_code == 200, raised.text
    # Only what the raiser needs (the escalation, not the case): `joined` says whether it
    # joined an open escalation of the same work.
    assert set(raised.json()) == {"id", "case_id", "status", "joined"}
    assert raised.json()["case_id"] == case["id"] and raised.json()["status"] == "open"
    assert case["customer_id"] not in raised.text


@in_session
async def test_sop_owners_and_integrations_do_not_read_other_cases(api: Api) -> None:
    acme = api.user("agent", vendor="acme", queues=[TIER1])
    owner, system = api.user("sop_owner"), api.user("system")
    case = await api.open_dispute(acme, customer_id=_customer())
    as_owner = await api.http.get(f"/cases/{case['id']}", headers=owner)
    assert as_owner.status_code == 403
    assert (await api.http.get("/cases", headers=owner)).status_code == 403
    assert (await api.http.get(f"/cases/{case['id']}", headers=system)).status_code == 404
    assert case["id"] not in await _listed(api, system, case["customer_id"])
    # An integration reads what it opened, and nothing else.
    customer = _customer()
    own = await api.open_dispute(system, customer_id=customer)
    assert (await api.http.get(f"/cases/{own['id']}", headers=system)).status_code == 200
    assert await _listed(api, system, customer) == [own["id"]]
    history = await api.http.get(f"/cases/{case['id']}/history", headers=system)
    assert history.status_code == 403


@in_session
async def test_a_lead_cannot_reassign_to_another_vendors_agent(api: Api) -> None:
    acme = api.user("agent", vendor="acme", queues=[TIER1])
    lead, globex_lead = api.user("lead"), api.user("lead", vendor="globex")
    globex_agent = _agent(api, "globex", [TIER1])
    elsewhere = _agent(api, "acme", ["collections-tier1"])
    acme_too = _agent(api, "acme", [TIER1])
    case = await api.open_dispute(acme, customer_id=_customer())
    task = await _task(api, acme, case["id"])
    raised = await api.http.post(
        f"/cases/{case['id']}/escalate",
        json={"reason": "stuck", "task_id": task["id"]},
        headers=acme,
    )
    esc_id = raised.json()["id"]

    async def on_board() -> int:
        return (await api.http.get(f"/escalations/{esc_id}", headers=lead)).status_code

    assert await eventually(on_board, lambda status: status == 200) == 200

    async def told() -> dict[str, Any]:
        return (await api.http.get(f"/cases/{case['id']}", headers=lead)).json()

    # The escalation tells its case it opened (a signal, in its own time): wait for it, so
    # that nothing but the refused reassignments could change the case from here on.
    before = await eventually(
        told, lambda c: any(h["event"] == "escalation_opened" for h in c["history"])
    )
    url = f"/escalations/{esc_id}/reassign"
    to_globex = await api.http.post(url, json={"to_user": globex_agent}, headers=lead)
    assert to_globex.status_code == 403, to_globex.text
    message = to_globex.json()["message"]
    assert globex_agent in message and "belongs to vendor acme" in message
    to_elsewhere = await api.http.post(url, json={"to_user": elsewhere}, headers=lead)
    assert to_elsewhere.status_code == 403 and TIER1 in to_elsewhere.json()["message"]
    nobody = await api.http.post(url, json={"to_user": "no-such-user"}, headers=lead)
    assert nobody.status_code == 422 and "to_user" in nobody.json()["message"]
    # A lead of another vendor does not see the escalation at all.
    foreign = await api.http.post(url, json={"to_queue": TIER1}, headers=globex_lead)
    assert foreign.status_code == 404
    board = await api.http.get("/escalations", params={"case_id": case["id"]}, headers=globex_lead)
    assert board.status_code == 200 and board.json() == []
    after = (await api.http.get(f"/cases/{case['id']}", headers=lead)).json()
    assert after["revision"] == before["revision"]
    assert after["tasks"] == before["tasks"]
    esc = (await api.http.get(f"/escalations/{esc_id}", headers=lead)).json()
    assert esc["status"] == "open"

    # To an agent who may work it: done.
    moved = await api.http.post(url, json={"to_user": acme_too}, headers=lead)
    assert moved.status_code == 200, moved.text
    held = await _task(api, lead, case["id"])
    assert held["assignee"] == acme_too


def _agent(api: Api, vendor: str, queues: list[str]) -> str:
    """A new agent's name (the board reassigns by name)."""
    name = f"{vendor}-{uuid.uuid4().hex[:6]}"
    with session_scope(api.engine) as session:
        create_user(session, name=name, role=Role.AGENT, vendor=vendor, queues=queues)
    return name
