"""The reconciler: a read model ahead of Temporal (a state Temporal lost) is replaced with
Temporal's state and the repair recorded; a case equal to Temporal is left alone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from domain.case_models import CaseSnapshot
from domain.escalation_models import EscalationSnapshot
from reconcile.reconciler import reconcile, reconcile_escalations
from store.read_model import (
    case_differences,
    escalation_differences,
    project_snapshot,
    replace_case_if,
    stored_case,
    stored_escalation,
)
from store.tables import CaseRow, EscalationRow, ReconciliationRow, TaskRow
from tests.harness import Api, eventually, running_api
from workflows.client import CaseCommandError, get_case, get_escalation

pytestmark = pytest.mark.asyncio(loop_scope="session")
TIER1 = "disputes-tier1"


async def _settled(api: Api, env: WorkflowEnvironment, case_id: str) -> CaseSnapshot:
    """Temporal's state once the read model has caught up with it."""

    async def probe() -> tuple[CaseSnapshot, list[str]]:
        truth = await get_case(env.client, case_id)
        stored = await asyncio.to_thread(stored_case, api.engine, case_id)
        return truth, case_differences(stored, truth)

    truth, differences = await eventually(probe, lambda found: not found[1])
    assert not differences, differences
    return truth


def _forge_ahead(api: Api, truth: CaseSnapshot) -> None:
    """What a lost workflow task leaves: a higher revision, the first task `done`."""
    phantom = truth.revision + 3
    cases, tasks = CaseRow.__table__, TaskRow.__table__
    with api.engine.begin() as connection:
        connection.execute(update(cases).where(cases.c.id == truth.id).values(revision=phantom))
        connection.execute(
            update(tasks)
            .where(tasks.c.id == truth.tasks[0].id)
            .values(status="done", outcome="accept", revision=phantom)
        )


async def _forged_case(api: Api, env: WorkflowEnvironment, amount: str) -> tuple[str, CaseSnapshot]:
    """A dispute, settled, whose read model is then forged ahead of Temporal."""
    agent = api.user("agent", queues=[TIER1])
    cid = (await api.open_dispute(agent, amount=amount))["id"]
    truth = await _settled(api, env, cid)
    _forge_ahead(api, truth)
    return cid, truth


def _repairs(api: Api, case_id: str) -> list[ReconciliationRow]:
    with Session(api.engine) as session:
        query = select(ReconciliationRow).where(ReconciliationRow.case_id == case_id)
        return list(session.exec(query).all())


async def test_a_read_model_ahead_of_temporal_is_repaired_and_recorded(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    agent = api.user("agent", queues=[TIER1])
    forged = (await api.open_dispute(agent, amount="150.00"))["id"]
    equal = (await api.open_dispute(agent, amount="160.00"))["id"]
    truth = await _settled(api, dev_server, forged)
    await _settled(api, dev_server, equal)
    equal_before = stored_case(api.engine, equal)
    _forge_ahead(api, truth)
    # The live projection cannot undo it: only a higher revision may overwrite.
    project_snapshot(api.engine, truth)
    assert case_differences(stored_case(api.engine, forged), truth)

    dry = await reconcile(
        dev_server.client,
        api.engine,
        api.settings.task_queue,
        repair=False,
        case_ids=[forged, equal],
    )
    assert [d.case_id for d in dry.differing] == [forged] and not dry.repaired
    assert not _repairs(api, forged)

    report = await reconcile(
        dev_server.client, api.engine, api.settings.task_queue, case_ids=[forged, equal]
    )
    assert report.checked == 2
    assert [d.case_id for d in report.repaired] == [forged]
    lines = report.repaired[0].differences
    assert any(f"task {truth.tasks[0].id}.status" in line for line in lines), lines
    assert any("case.revision" in line for line in lines), lines
    assert case_differences(stored_case(api.engine, forged), truth) == []
    assert stored_case(api.engine, equal) == equal_before  # left alone
    assert not _repairs(api, equal)
    (record,) = _repairs(api, forged)
    assert record.read_model_revision == truth.revision + 3
    assert record.temporal_revision == truth.revision and record.source == "query"

    # The task is back in the inbox as it really is: open, so claim-next offers it.
    claimed = await api.http.post(f"/queues/{TIER1}/claim-next", headers=agent)
    assert claimed.status_code == 200, claimed.text
    again = await reconcile(
        dev_server.client, api.engine, api.settings.task_queue, case_ids=[forged, equal]
    )
    assert not again.repaired

    metrics = await api.http.get("/metrics", headers=api.user("admin"))
    assert metrics.status_code == 200, metrics.text
    assert "casebook_read_model_repairs_total" in metrics.text


async def test_a_repair_never_overwrites_a_row_that_moved_since_it_was_compared(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    agent = api.user("agent", queues=[TIER1])
    cid = (await api.open_dispute(agent, amount="170.00"))["id"]
    truth = await _settled(api, dev_server, cid)
    stale = truth.model_copy(update={"current_step": "forged", "revision": truth.revision})
    assert not replace_case_if(api.engine, stale, truth.revision - 1)
    assert not replace_case_if(api.engine, stale, None)  # a row exists: not an insert
    assert case_differences(stored_case(api.engine, cid), truth) == []


async def test_the_api_repairs_in_the_background_soon_after_it_starts(
    dev_server: WorkflowEnvironment, engine: Engine
) -> None:
    async with running_api(dev_server.client, engine, reconcile_every=1) as api:
        cid, truth = await _forged_case(api, dev_server, "180.00")

        async def repaired() -> list[ReconciliationRow]:
            return await asyncio.to_thread(_repairs, api, cid)

        assert await eventually(repaired, bool, timeout=20)
        assert case_differences(stored_case(api.engine, cid), truth) == []


async def test_casebook_store_reconcile_reports_and_repairs_with_no_worker_of_its_own(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    from cli.main import _reconcile
    from settings import Settings

    cid, truth = await _forged_case(api, dev_server, "190.00")
    settings = Settings(
        database_url=str(api.engine.url.render_as_string(hide_password=False)),
        temporal_address=dev_server.client.service_client.config.target_host,
        task_queue=api.settings.task_queue,
    )
    dry = await _reconcile(settings, repair=False)
    assert any(line.startswith(f"differs {cid} ") for line in dry.lines()), dry.lines()
    assert case_differences(stored_case(api.engine, cid), truth)
    report = await _reconcile(settings, repair=True)
    printed = "\n".join(report.lines())
    assert (
        f"repaired {cid} (read model r{truth.revision + 3}, Temporal r{truth.revision}" in printed
    )
    assert f"task {truth.tasks[0].id}.status: read model 'done', Temporal 'open'" in printed
    assert case_differences(stored_case(api.engine, cid), truth) == []


async def test_a_restarted_worker_repairs_once_in_the_background(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    cid, truth = await _forged_case(api, dev_server, "195.00")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CASEBOOK_")},
        "CASEBOOK_DATABASE_URL": api.engine.url.render_as_string(hide_password=False),
        "CASEBOOK_TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "CASEBOOK_TASK_QUEUE": api.settings.task_queue,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        async def repaired() -> list[ReconciliationRow]:
            return await asyncio.to_thread(_repairs, api, cid)

        assert await eventually(repaired, bool, timeout=90), "the worker did not repair"
        assert worker.poll() is None  # the pass ran beside the worker, which serves on
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert case_differences(stored_case(api.engine, cid), truth) == []


async def test_a_board_row_ahead_of_its_escalation_is_repaired_and_recorded(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    agent = api.user("agent", queues=[TIER1])
    cid = (await api.open_dispute(agent, amount="210.00"))["id"]
    raised = await api.http.post(
        f"/cases/{cid}/escalate", json={"reason": "customer threatens to leave"}, headers=agent
    )
    assert raised.status_code == 200, raised.text
    eid = raised.json()["id"]

    async def on_board() -> tuple[EscalationSnapshot | None, list[str]]:
        try:  # the case starts its escalation's workflow a moment after it answered
            truth = await get_escalation(dev_server.client, eid)
        except CaseCommandError as exc:
            return None, [str(exc)]
        stored = await asyncio.to_thread(stored_escalation, api.engine, eid)
        return truth, escalation_differences(stored, truth)

    truth, differences = await eventually(on_board, lambda found: not found[1])
    assert truth is not None and not differences, differences
    table = EscalationRow.__table__
    with api.engine.begin() as connection:  # a resolution Temporal never kept
        forged = {"revision": truth.revision + 2, "status": "resolved", "owner": "ghost"}
        connection.execute(update(table).where(table.c.id == eid).values(**forged))

    report = await reconcile_escalations(dev_server.client, api.engine, [eid])
    assert [d.case_id for d in report.repaired] == [eid]
    assert any("escalation.status" in line for line in report.repaired[0].differences)
    assert escalation_differences(stored_escalation(api.engine, eid), truth) == []
    (record,) = _repairs(api, cid)
    assert record.escalation_id == eid and record.temporal_revision == truth.revision
    assert not (await reconcile_escalations(dev_server.client, api.engine, [eid])).repaired
