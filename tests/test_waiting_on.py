"""`GET /cases/{id}` says what a case waits on: a billing outage (attempts, last error, on
the history when it begins and ends), a paused task (its time left), a `wait` step (its
instant). The API and a worker on Temporal's time-skipping server, the built-in billing
service over HTTP (stopped: an outage)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from audit.replay import replay_case
from store.read_model import get_case
from tests.billing_harness import BillingService
from tests.conftest import start_time_skipping
from tests.harness import DISPUTE, Api, eventually, running_api, terminate_cases
from tests.smtp_sink import SmtpSink
from workflows import case_outages

pytestmark = pytest.mark.asyncio(loop_scope="session")
TODAY = date.today()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BillingService]:
    with BillingService(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'billing.db'}") as billing:
        yield billing


@pytest_asyncio.fixture(loop_scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """One server per test: a closed case's archive child stops a shared one skipping."""
    server = await start_time_skipping()
    yield server
    await server.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def api(
    env: WorkflowEnvironment, sqlite_engine: Engine, ledger: BillingService
) -> AsyncIterator[Api]:
    async with running_api(env.client, sqlite_engine, billing_url=ledger.url) as api:
        yield api


def _customer(ledger: BillingService, amount: str, currency: str = "USD") -> tuple[str, str]:
    """A fresh customer with one invoice 20 days past due."""
    customer = f"W-{uuid.uuid4().hex[:6]}"
    ledger.put_customer(customer, currency=currency)
    invoice = f"{customer}-1"
    due = TODAY - timedelta(days=20)
    ledger.put_invoice(invoice, customer, amount, due, due - timedelta(days=30))
    return customer, invoice


async def _open(api: Api, headers: dict[str, str], **changes: Any) -> str:
    response = await api.http.post("/cases", json={**DISPUTE, **changes}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _case(api: Api, headers: dict[str, str], case_id: str) -> dict[str, Any]:
    response = await api.http.get(f"/cases/{case_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _work(
    api: Api, headers: dict[str, str], case_id: str, step: str, outcome: str, **data: Any
) -> None:
    """Claim and complete the case's open task of `step`, once it is there."""
    case = await eventually(
        lambda: _case(api, headers, case_id),
        lambda c: any(t["step"] == step and t["status"] == "open" for t in c["tasks"]),
    )
    [task] = [t for t in case["tasks"] if t["step"] == step and t["status"] == "open"]
    claimed = await api.http.post(f"/tasks/{task['id']}/claim", headers=headers)
    assert claimed.status_code == 200, claimed.text
    done = await api.http.post(
        f"/tasks/{task['id']}/complete", json={"outcome": outcome, "data": data}, headers=headers
    )
    assert done.status_code == 200, done.text


def _events(case: dict[str, Any]) -> list[str]:
    return [h["event"] for h in case["history"]]


async def _credit_memo_meets_an_outage(
    env: WorkflowEnvironment, api: Api, ledger: BillingService, agent: dict[str, str]
) -> str:
    """A dispute worked up to its credit memo with billing down: the call's first round
    (attempts at 0, 2 and 6 s) has failed, the next is 8 s later. The caller starts billing
    again and terminates the case."""
    customer, invoice = _customer(ledger, "900.00")
    case_id = await _open(
        api, agent, customer_id=customer, invoice_ids=[invoice], amount="250.00", data={}
    )
    try:
        await _work(api, agent, case_id, "triage", "accept")
        ledger.stop()  # billing goes down before the credit memo
        await _work(api, agent, case_id, "investigate", "valid")
        await env.sleep(timedelta(seconds=10))
    except BaseException:
        ledger.start()
        await terminate_cases(env.client, [case_id])
        raise
    return case_id


async def _closed_after_the_next_round(
    env: WorkflowEnvironment, api: Api, agent: dict[str, str], case_id: str, retry_at: datetime
) -> dict[str, Any]:
    """Skip just past the next round, which finds billing back, and read the closed case
    (skip no further: once the case closes, its archive child stops the test server from
    skipping)."""
    await env.sleep(retry_at - await env.get_current_time() + timedelta(seconds=1))
    return await eventually(lambda: _case(api, agent, case_id), lambda c: c["status"] == "closed")


async def test_a_billing_outage_shows_attempts_and_last_error_and_is_on_the_history(
    env: WorkflowEnvironment, api: Api, ledger: BillingService
) -> None:
    agent = api.user("agent", queues=["disputes-tier1"], cross_vendor=True)
    case_id = await _credit_memo_meets_an_outage(env, api, ledger, agent)
    try:
        try:
            case = await eventually(
                lambda: _case(api, agent, case_id), lambda c: c["waiting_on"]["outages"] != []
            )
            [outage] = case["waiting_on"]["outages"]
            assert outage["system"] == "billing" and outage["step"] == "issue_credit"
            assert outage["attempts"] == case_outages.ROUND_ATTEMPTS
            assert "BillingUnavailableError" in outage["last_error"]
            assert outage["retry_at"] is not None
            assert case["waiting_on"]["action"]["step"] == "issue_credit"
            assert case["waiting_on"]["tasks"] == []  # no person bothered
            assert _events(case).count("outage_began") == 1
            began = next(h for h in case["history"] if h["event"] == "outage_began")
            assert began["detail"]["attempts"] == 3 and began["detail"]["system"] == "billing"

            # The next round fails too: the count grows on the case, not on the history.
            await env.sleep(timedelta(seconds=20))
            case = await eventually(
                lambda: _case(api, agent, case_id),
                lambda c: c["waiting_on"]["outages"][0]["attempts"] > 3,
            )
            assert case["waiting_on"]["outages"][0]["attempts"] == 6
            assert _events(case).count("outage_began") == 1
            # The read model has it too (inbox and lists read it).
            stored = await eventually(
                lambda: _stored(api, case_id), lambda s: s.get("outages") != []
            )
            assert stored["outages"][0]["attempts"] >= 3
            retry_at = datetime.fromisoformat(case["waiting_on"]["outages"][0]["retry_at"])
        finally:
            ledger.start()
        case = await _closed_after_the_next_round(env, api, agent, case_id, retry_at)
        assert case["resolution"] == "credited" and case["waiting_on"]["outages"] == []
        events = _events(case)
        assert events.count("outage_ended") == 1
        assert events.index("outage_began") < events.index("outage_ended")
        credited = next(  # dispute v3 marked the invoice disputed in billing before
            i
            for i, h in enumerate(case["history"])
            if h["event"] == "billing_done" and h["step"] == "issue_credit"
        )
        assert events.index("outage_ended") < credited
        ended = next(h for h in case["history"] if h["event"] == "outage_ended")
        assert ended["detail"]["attempts"] == 6 and ended["detail"]["lasted_seconds"] > 0
        assert "BillingUnavailableError" in ended["detail"]["last_error"]
        # The rounds, their timers and the news replay the same way.
        history = await env.client.get_workflow_handle(case_id).fetch_history()
        verdict = await replay_case(history)
        assert verdict.deterministic, verdict
    finally:
        await terminate_cases(env.client, [case_id])


async def _stored(api: Api, case_id: str) -> dict[str, Any]:
    with Session(api.engine) as session:
        row = get_case(session, case_id)
        return dict(row.snapshot) if row else {}


async def test_a_paused_task_shows_its_time_left_frozen_not_a_null_deadline(
    env: WorkflowEnvironment, api: Api, ledger: BillingService
) -> None:
    agent = api.user("agent", queues=["disputes-tier1"], cross_vendor=True)
    customer, invoice = _customer(ledger, "900.00")  # billing marks the dispute first
    case_id = await _open(  # wall time: triage has 4 hours
        api, agent, region="24x7", customer_id=customer, invoice_ids=[invoice]
    )
    try:
        case = await eventually(lambda: _case(api, agent, case_id), lambda c: c["tasks"] != [])
        task = case["tasks"][0]
        [waiting] = case["waiting_on"]["tasks"]
        assert waiting["due"] is not None and not waiting["paused"]
        assert 4 * 3600 - 60 < waiting["time_left_seconds"] <= 4 * 3600
        assert (await api.http.post(f"/tasks/{task['id']}/claim", headers=agent)).is_success
        await env.sleep(timedelta(hours=1))
        paused = await api.http.post(
            f"/tasks/{task['id']}/pause", json={"reason": "awaiting_customer"}, headers=agent
        )
        assert paused.status_code == 200, paused.text
        left = paused.json()["sla_left_seconds"]
        assert paused.json()["sla_due"] is None
        assert 3 * 3600 - 60 < left <= 3 * 3600

        await env.sleep(timedelta(days=2))  # long past the deadline it had, but paused
        case = await _case(api, agent, case_id)
        [waiting] = case["waiting_on"]["tasks"]
        assert waiting["paused"] and waiting["due"] is None
        assert waiting["time_left_seconds"] == left  # frozen, two days on
        assert waiting["pause_reason"] == "awaiting_customer"
        [event] = [h for h in case["history"] if h["event"] == "sla_paused"]
        assert event["detail"]["reason"] == "awaiting_customer"
        assert event["detail"]["time_left_seconds"] == left
        assert case["escalations"] == []
    finally:
        await terminate_cases(env.client, [case_id])


async def test_a_wait_step_shows_the_instant_the_case_goes_on(
    env: WorkflowEnvironment, api: Api, ledger: BillingService
) -> None:
    agent = api.user("agent", queues=["collections-tier1"], cross_vendor=True)
    customer, invoice = _customer(ledger, "700.00", currency="EUR")
    case_id = await _open(
        api,
        agent,
        type="collection",
        customer_id=customer,
        invoice_ids=[invoice],
        amount="700.00",
        currency="EUR",
        region="FR",
        reason_code="overdue",
        data={},
    )
    try:
        await _work(api, agent, case_id, "contact_customer", "no_contact")
        case = await eventually(
            lambda: _case(api, agent, case_id), lambda c: c["waiting_on"]["timers"] != []
        )
        [timer] = case["waiting_on"]["timers"]
        waiting = next(h for h in case["history"] if h["event"] == "waiting")
        assert timer["step"] == "wait_before_reminder" and timer["kind"] == "after"
        assert timer["until"].replace("Z", "+00:00") == waiting["detail"]["until"]
        assert 6 * 86400 < timer["seconds_left"] <= 7 * 86400
        assert case["waiting_on"]["tasks"] == [] and case["waiting_on"]["outages"] == []
    finally:
        await terminate_cases(env.client, [case_id])


async def test_an_smtp_outage_shows_on_the_case_beside_its_work_and_ends_on_the_history(
    env: WorkflowEnvironment, sqlite_engine: Engine
) -> None:
    mail = SmtpSink()  # not started yet: SMTP is down
    try:
        async with running_api(env.client, sqlite_engine, smtp_port=mail.port) as api:
            agent = api.user("agent", queues=["disputes-tier1"], cross_vendor=True)
            case_id = await _open(api, agent)  # its acknowledgement goes to the contact
            try:
                await env.sleep(timedelta(seconds=10))  # the first round (0, 2, 6 s) fails
                case = await eventually(
                    lambda: _case(api, agent, case_id),
                    lambda c: c["waiting_on"]["outages"] != [],
                )
                [outage] = case["waiting_on"]["outages"]
                assert outage["system"] == "email" and outage["step"] == "acknowledge"
                assert outage["attempts"] == case_outages.ROUND_ATTEMPTS
                assert "SMTP" in outage["last_error"] or "connect" in outage["last_error"].lower()
                # The case does not wait for the mail: triage is open meanwhile.
                assert [t["step"] for t in case["waiting_on"]["tasks"]] == ["triage"]
                assert _events(case).count("outage_began") == 1

                mail.start()
                retry_at = datetime.fromisoformat(outage["retry_at"])
                await env.sleep(retry_at - await env.get_current_time() + timedelta(seconds=1))
                case = await eventually(
                    lambda: _case(api, agent, case_id),
                    lambda c: "outage_ended" in _events(c),
                )
                assert case["waiting_on"]["outages"] == []
                ended = next(h for h in case["history"] if h["event"] == "outage_ended")
                assert ended["detail"]["system"] == "email" and ended["detail"]["attempts"] == 3
                assert len(mail.messages()) == 1
                history = await env.client.get_workflow_handle(case_id).fetch_history()
                verdict = await replay_case(history)
                assert verdict.deterministic, verdict
            finally:
                await terminate_cases(env.client, [case_id])
    finally:
        mail.stop()


async def test_work_raised_during_a_billing_outage_is_not_held_until_billing_is_back(
    env: WorkflowEnvironment, api: Api, ledger: BillingService
) -> None:
    """While the case waits out billing, the rest of its loop goes on: an escalation raised
    meanwhile reaches the lead board at once, not when billing comes back."""
    agent = api.user("agent", queues=["disputes-tier1"], cross_vendor=True)
    lead = api.user("lead", queues=["disputes-leads"])
    case_id = await _credit_memo_meets_an_outage(env, api, ledger, agent)
    try:
        try:
            await eventually(
                lambda: _case(api, agent, case_id), lambda c: c["waiting_on"]["outages"] != []
            )
            raised = await api.http.post(
                f"/cases/{case_id}/escalate",
                json={"reason": "credit memo stuck, customer on the phone"},
                headers=agent,
            )
            assert raised.status_code == 200, raised.text

            async def board() -> list[dict[str, Any]]:
                response = await api.http.get(
                    "/escalations", params={"case_id": case_id}, headers=lead
                )
                return list(response.json())

            [esc] = await eventually(board, lambda b: len(b) == 1)
            assert esc["id"] == raised.json()["id"] and esc["status"] == "open"
            case = await _case(api, agent, case_id)
            assert case["waiting_on"]["outages"] != []  # billing is still down
            assert case["waiting_on"]["action"]["step"] == "issue_credit"
            [link] = case["escalations"]
            assert link["started"] is True
            retry_at = datetime.fromisoformat(case["waiting_on"]["outages"][0]["retry_at"])
        finally:
            ledger.start()
        case = await _closed_after_the_next_round(env, api, agent, case_id, retry_at)
        events = _events(case)
        assert events.index("escalation_opened") < events.index("outage_ended")
        assert events.index("outage_ended") < len(events) - events[::-1].index("billing_done")
        history = await env.client.get_workflow_handle(case_id).fetch_history()
        verdict = await replay_case(history)
        assert verdict.deterministic, verdict.divergence
    finally:
        await terminate_cases(env.client, [case_id, f"{case_id}.e1"])
