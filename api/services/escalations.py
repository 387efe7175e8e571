"""Escalations: raising one by hand, the lead board, and what leads do about them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.deps import Services
from api.errors import ApiError
from api.services import tasks
from api.services.idempotency import run_once
from store.read_model import EscalationFilter, list_escalations, project_escalation
from store.tables import EscalationRow
from workflows import client as temporal
from workflows.case_models import (
    Actor,
    CaseSnapshot,
    ClaimTask,
    CompleteTask,
    EscalateCase,
    ReassignTask,
    TaskStatus,
)
from workflows.client import CaseCommandError
from workflows.escalation_models import EscalationKind, EscalationSnapshot, LeadAction

DECISIONS = ("approve", "reject")


async def escalate(
    svc: Services, actor: Actor, case_id: str, cmd: EscalateCase, key: str | None = None
) -> CaseSnapshot:
    """Raise the case by hand; with an Idempotency-Key a retry repeats the first answer."""

    async def send(update_id: str | None) -> CaseSnapshot:
        snapshot = await temporal.escalate_case(
            svc.temporal, case_id, cmd, tasks.timeout(svc), update_id
        )
        await run_in_threadpool(tasks.project_snapshot, svc.engine, snapshot)
        return snapshot

    request = cmd.model_dump(mode="json", exclude={"actor"})
    return await run_once(svc.engine, actor, key, "escalate", case_id, request, send, CaseSnapshot)


def board(svc: Services, f: EscalationFilter) -> Sequence[EscalationRow]:
    with Session(svc.engine) as session:
        return list_escalations(session, f)


async def read(svc: Services, escalation_id: str) -> EscalationSnapshot:
    return await temporal.get_escalation(svc.temporal, escalation_id)


async def act(svc: Services, escalation_id: str, action: LeadAction) -> EscalationSnapshot:
    """Acknowledge or resolve; reassign and approve/reject act on the escalated task first."""
    settled_by_case = False
    if action.action == "reassign" or action.action in DECISIONS:
        esc = await read(svc, escalation_id)
        await _act_on_task(svc, esc, action)
        # Deciding an approval's task settles the escalation from the case as well.
        settled_by_case = esc.kind == EscalationKind.APPROVAL and action.action in DECISIONS
    try:
        esc = await temporal.act_on_escalation(
            svc.temporal, escalation_id, action, tasks.timeout(svc)
        )
    except CaseCommandError as exc:
        if not (settled_by_case and exc.kind == "conflict"):
            raise
        esc = await read(svc, escalation_id)  # the case's word arrived first: same decision
    await run_in_threadpool(project_escalation, svc.engine, esc)
    return esc


async def _act_on_task(svc: Services, esc: EscalationSnapshot, action: LeadAction) -> None:
    if esc.task_id is None:
        raise ApiError("conflict", f"escalation {esc.id} has no task to {action.action}")
    if action.action == "reassign":
        cmd = ReassignTask(
            task_id=esc.task_id, actor=action.actor, note=action.note, **action.detail
        )
        await tasks.command(svc, cmd)
        return
    case = await temporal.get_case(svc.temporal, esc.case_id)
    task = case.task(esc.task_id)
    if task is None or task.status == TaskStatus.DONE or action.action not in task.allowed_outcomes:
        raise ApiError(
            "conflict", f"case {esc.case_id} is not waiting on an approval of task {esc.task_id}"
        )
    if task.assignee != action.actor.name:
        if task.status == TaskStatus.CLAIMED:
            # The lead takes the decision over from whoever held the task.
            await tasks.command(
                svc, ReassignTask(task_id=task.id, actor=action.actor, to_user=action.actor.name)
            )
        else:
            await tasks.command(svc, ClaimTask(task_id=task.id, actor=action.actor))
    await tasks.command(
        svc,
        CompleteTask(task_id=task.id, actor=action.actor, outcome=action.action, note=action.note),
    )
