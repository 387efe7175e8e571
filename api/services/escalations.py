"""Escalations: raising one by hand, the lead board, and what leads do about them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from access.policy import Action, reach, refuse_escalation
from api.deps import Services, refused
from api.errors import ApiError
from api.services import tasks
from api.services.idempotency import run_once
from domain.case_models import (
    Actor,
    ClaimTask,
    CompleteTask,
    EscalateCase,
    EscalationLink,
    ReassignTask,
    TaskStatus,
)
from domain.escalation_models import EscalationKind, EscalationSnapshot, LeadAction
from store.read_model import EscalationFilter, list_escalations, project_escalation
from store.tables import EscalationRow
from store.users import user_named
from workflows import client as temporal
from workflows.client import CaseCommandError
from workflows.escalation_logic import POLICY_ACTION

DECISIONS = ("approve", "reject")


class EscalationRaised(EscalationLink):
    """The escalation a manual escalation opened, or joined (work already escalated)."""

    joined: bool = False


async def escalate(
    svc: Services, actor: Actor, case_id: str, cmd: EscalateCase, key: str | None = None
) -> EscalationRaised:
    """Raise the case by hand; the case's validator asks the policy (vendor, queue). The
    caller gets the escalation it opened or joined, not the case; with an Idempotency-Key a
    retry repeats the first answer."""

    async def send(update_id: str | None) -> EscalationRaised:
        result = await temporal.escalate_case(
            svc.temporal, case_id, cmd, tasks.timeout(svc), update_id
        )
        await tasks.catch_up(svc, result)
        assert result.escalation is not None  # the escalation this Update opened or joined
        return EscalationRaised(**result.escalation.model_dump(), joined=result.joined)

    request = cmd.model_dump(mode="json", exclude={"actor"})
    return await run_once(
        svc.engine, actor, key, "escalate", case_id, request, send, EscalationRaised
    )


def board(svc: Services, actor: Actor, f: EscalationFilter) -> Sequence[EscalationRow]:
    with Session(svc.engine) as session:
        return list_escalations(session, replace(f, reach=reach(actor, Action.BOARD_READ)))


async def read(
    svc: Services, actor: Actor, escalation_id: str, action: Action
) -> EscalationSnapshot:
    """The escalation, if the policy lets `actor` do `action` on it (404 outside its vendor)."""
    esc = await temporal.get_escalation(svc.temporal, escalation_id)
    refused(refuse_escalation(actor, action, esc.id, esc.vendor))
    return esc


async def act(svc: Services, escalation_id: str, action: LeadAction) -> EscalationSnapshot:
    """Acknowledge or resolve; reassign and approve/reject act on the escalated task first."""
    policy_action = POLICY_ACTION.get(action.action, Action.BOARD_ACT)
    esc = await read(svc, action.actor, escalation_id, policy_action)
    settled_by_case = False
    if action.action == "reassign" or action.action in DECISIONS:
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
        # The case's word arrived first: same decision.
        esc = await temporal.get_escalation(svc.temporal, escalation_id)
    await run_in_threadpool(project_escalation, svc.engine, esc)
    return esc


async def _act_on_task(svc: Services, esc: EscalationSnapshot, action: LeadAction) -> None:
    if esc.task_id is None:
        raise ApiError("conflict", f"escalation {esc.id} has no task to {action.action}")
    if action.action == "reassign":
        to_user = action.detail.get("to_user")
        cmd = ReassignTask(
            task_id=esc.task_id,
            actor=action.actor,
            note=action.note,
            to_user=to_user,
            to_actor=await run_in_threadpool(_actor_named, svc, to_user) if to_user else None,
            to_queue=action.detail.get("to_queue"),
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
            cmd = ReassignTask(
                task_id=task.id,
                actor=action.actor,
                to_user=action.actor.name,
                to_actor=action.actor,
            )
            await tasks.command(svc, cmd)
        else:
            await tasks.command(svc, ClaimTask(task_id=task.id, actor=action.actor))
    await tasks.command(
        svc,
        CompleteTask(task_id=task.id, actor=action.actor, outcome=action.action, note=action.note),
    )


def _actor_named(svc: Services, name: str) -> Actor:
    """The user a lead hands a task to, as the policy sees it (422 when there is none)."""
    with Session(svc.engine) as session:
        user = user_named(session, name)
    if user is None:
        raise ApiError("invalid", f"to_user: no user named {name!r}", {"field": "to_user"})
    return svc.actor(user)
