"""An SOP error at run time becomes work for a person: a task with the error and the step
(`retry`, `skip`, `goto`), the case marked stalled; never a workflow task failing forever."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain.case_models import SOP_ERROR, CaseInput, CaseSnapshot, ClaimTask, CompleteTask
from sop_templates.schema import DEFAULT_ERROR_QUEUE, SopTemplate
from tests.harness import (
    AGENT,
    LEAD,
    Api,
    case_input,
    eventually,
    past_intake,
    shipped_document,
    terminate_cases,
)
from workflows import case_logic
from workflows.case_logic import CaseRuleError
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
# Reads data the investigation never gives: the SOP's own mistake, found at run time.
BROKEN_RULE = "case.data.finding.risk_score > 1"


def _broken_dispute() -> CaseInput:
    document = shipped_document("dispute")
    route = next(s for s in document["steps"] if s["id"] == "approval_route")
    route["branches"][0]["when"] = BROKEN_RULE
    inp = case_input("dispute", "100.00", region="24x7")
    return inp.model_copy(update={"template": SopTemplate.model_validate(document)})


def _to_the_broken_decision(inp: CaseInput, errors_become_work: bool) -> CaseSnapshot:
    case = case_logic.open_case(inp, NOW, errors_become_work=errors_become_work)
    past_intake(case, inp.template, NOW)
    for n, outcome in ((1, "accept"), (2, "valid")):
        task_id = f"{case.id}.t{n}"
        case_logic.claim(case, ClaimTask(task_id=task_id, actor=AGENT), NOW)
        done = CompleteTask(task_id=task_id, actor=AGENT, outcome=outcome)
        case_logic.complete(case, inp.template, done, NOW)
    return case


def test_a_decision_reading_missing_data_opens_a_task_with_the_error() -> None:
    inp = _broken_dispute()
    case = _to_the_broken_decision(inp, errors_become_work=True)
    task = case.tasks[-1]
    assert task.step == "approval_route" and task.queue == DEFAULT_ERROR_QUEUE
    assert task.allowed_outcomes == ["retry", "skip", "goto"]
    assert "risk_score is missing" in task.data[SOP_ERROR]["error"]
    assert case.stalled and "approval_route" in case.stalled
    assert case.history[-2].event == "sop_error"


def test_cases_from_before_the_patch_keep_failing_as_they_recorded() -> None:
    with pytest.raises(CaseRuleError):
        _to_the_broken_decision(_broken_dispute(), errors_become_work=False)


def test_goto_must_name_a_step_and_skip_follows_the_step() -> None:
    inp = _broken_dispute()
    case = _to_the_broken_decision(inp, errors_become_work=True)
    error_task = case.tasks[-1].id
    case_logic.claim(case, ClaimTask(task_id=error_task, actor=LEAD), NOW)
    nowhere = CompleteTask(task_id=error_task, actor=LEAD, outcome="goto", data={"goto": "x"})
    with pytest.raises(CaseRuleError) as refused:
        case_logic.check_complete(case, nowhere, inp.template)
    assert refused.value.kind == "invalid" and refused.value.details["field"] == "data.goto"
    skip = CompleteTask(task_id=error_task, actor=LEAD, outcome="skip")
    case_logic.complete(case, inp.template, skip, NOW)
    # A decision's next step is its `otherwise`: the credit is issued without the lead.
    assert case.stalled is None and case.current_step == "issue_credit"


async def _eventually(handle: WorkflowHandle[Any, Any], accept: Any) -> CaseSnapshot:
    for _ in range(150):
        case: CaseSnapshot = await handle.query(CaseWorkflow.snapshot)
        if accept(case):
            return case
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached: {case.current_step} {case.stalled}")


async def _work(handle: WorkflowHandle[Any, Any], task_id: str, actor: Any, **done: Any) -> None:
    await handle.execute_update(CaseWorkflow.claim_task, ClaimTask(task_id=task_id, actor=actor))
    await handle.execute_update(
        CaseWorkflow.complete_task, CompleteTask(task_id=task_id, actor=actor, **done)
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_the_workflow_never_fails_a_task_on_it_and_goes_on_when_told(
    time_skipping: WorkflowEnvironment, sqlite_engine: Engine
) -> None:
    inp = _broken_dispute().model_copy(update={"case_id": f"DSP-ERR-{uuid.uuid4().hex[:8]}"})
    queue = f"soperr-{uuid.uuid4().hex[:8]}"
    async with build_worker(time_skipping.client, queue, sqlite_engine):
        handle = await time_skipping.client.start_workflow(
            CaseWorkflow.run, inp, id=inp.case_id, task_queue=queue
        )
        try:
            # The triage task opens once the workflow's loop has queued the acknowledgement.
            await _eventually(handle, lambda c: c.task(f"{inp.case_id}.t1") is not None)
            await _work(handle, f"{inp.case_id}.t1", AGENT, outcome="accept")
            await _work(handle, f"{inp.case_id}.t2", AGENT, outcome="valid")
            case = await _eventually(handle, lambda c: c.stalled is not None)
            error_task = case.tasks[-1]
            assert error_task.step == "approval_route" and SOP_ERROR in error_task.data
            await _work(
                handle, error_task.id, LEAD, outcome="goto", data={"goto": "notify_rejected"}
            )
            final = await _eventually(handle, lambda c: c.status == "closed")
            assert final.resolution == "rejected" and final.stalled is None
        finally:
            await terminate_cases(time_skipping.client, [inp.case_id])
    history = await handle.fetch_history()
    failed = [e for e in history.events if e.HasField("workflow_task_failed_event_attributes")]
    assert failed == []


def test_a_move_that_changes_the_kind_of_the_current_step_is_refused() -> None:
    inp = case_input("dispute", "100.00", region="24x7")
    case = case_logic.open_case(inp, NOW)
    past_intake(case, inp.template, NOW)  # now at triage, a human task
    document = shipped_document("dispute")
    document["version"] = int(document["version"]) + 1
    triage = next(s for s in document["steps"] if s["id"] == "triage")
    document["steps"][document["steps"].index(triage)] = {
        "id": "triage", "kind": "wait", "after": "1d", "next": "investigate"
    }  # fmt: skip
    later = SopTemplate.model_validate(document)
    reason = case_logic.migration_blocker(case, later, inp.template)
    assert reason is not None and "human_task step" in reason and "wait step" in reason


@pytest.mark.asyncio(loop_scope="session")
async def test_a_stalled_case_shows_on_the_api_and_in_a_metric(api: Api) -> None:
    owner, lead = api.user("sop_owner"), api.user("lead")
    agent = api.user("agent", queues=["disputes-tier1"])
    document = _broken_dispute().template.model_dump(mode="json", exclude_none=True)
    document["version"] = int(shipped_document("dispute")["version"]) + 1
    drafted = await api.http.post("/sops/dispute/versions", json=document, headers=owner)
    assert drafted.status_code in (200, 201), drafted.text
    published = await api.http.post(
        f"/sops/dispute/versions/{document['version']}/publish", headers=owner
    )
    assert published.status_code == 200, published.text
    cid = (await api.open_dispute(agent))["id"]
    for n, outcome in ((1, "accept"), (2, "valid")):
        await api.http.post(f"/tasks/{cid}.t{n}/claim", headers=agent)
        done = await api.http.post(
            f"/tasks/{cid}.t{n}/complete", json={"outcome": outcome}, headers=agent
        )
        assert done.status_code == 200, done.text

    async def detail() -> dict[str, Any]:
        return (await api.http.get(f"/cases/{cid}", headers=lead)).json()

    case = await eventually(detail, lambda c: c.get("stalled") is not None)
    assert "approval_route" in case["stalled"] and "risk_score" in case["stalled"]
    listed = (await api.http.get("/cases", params={"status": "open"}, headers=lead)).json()
    assert next(c for c in listed if c["id"] == cid)["stalled"] == case["stalled"]
    metrics = (await api.http.get("/metrics", headers=lead)).text
    [line] = [m for m in metrics.splitlines() if m.startswith("casebook_cases_stalled ")]
    assert float(line.split()[1]) >= 1
