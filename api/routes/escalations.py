"""/escalations and /cases/{id}/escalate: the tier-2 board and its actions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from access.policy import Action
from api.deps import ServicesDep, authorize
from api.schemas import (
    ActionBody,
    EntityId,
    EscalateBody,
    EscalationOut,
    Limit,
    Offset,
    ReassignBody,
    ShortText,
)
from api.services import escalations as service
from api.services.idempotency import IdempotencyKey
from domain.case_models import Actor, EscalateCase
from domain.escalation_models import EscalationSnapshot, LeadAction
from store.read_model import EscalationFilter

router = APIRouter(tags=["escalations"])

Raiser = Annotated[Actor, Depends(authorize(Action.ESCALATE))]
BoardActor = Annotated[Actor, Depends(authorize(Action.BOARD_ACT))]
Reassigner = Annotated[Actor, Depends(authorize(Action.REASSIGN))]
Approver = Annotated[Actor, Depends(authorize(Action.APPROVE))]
BoardReader = Annotated[Actor, Depends(authorize(Action.BOARD_READ))]


class EscalationOpened(BaseModel):
    """Only what the raiser opened: no case data travels back (read the case for that).
    `joined`: the work was already escalated, and this became a note on that escalation."""

    id: str
    case_id: str
    status: str
    joined: bool = False


@router.post("/cases/{case_id}/escalate", response_model=EscalationOpened)
async def escalate(
    case_id: str, body: EscalateBody, actor: Raiser, svc: ServicesDep, key: IdempotencyKey = None
) -> EscalationOpened:
    """Raise the case to tier-2 by hand, with a reason; the task must be in the caller's
    scope (an agent: its queues and vendor). Answers with the escalation it opened; work
    already escalated (an unresolved escalation of the same task) joins that escalation as
    a note instead (`joined: true`). An
    `Idempotency-Key` makes a retry repeat the first answer (409 if the key was used for
    another request or by another user)."""
    cmd = EscalateCase(actor=actor, reason=body.reason, task_id=body.task_id)
    link = await service.escalate(svc, actor, case_id, cmd, key)
    return EscalationOpened(id=link.id, case_id=case_id, status=link.status, joined=link.joined)


@router.get("/escalations", response_model=list[EscalationOut])
async def board(
    actor: BoardReader,
    svc: ServicesDep,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    queue: Annotated[ShortText | None, Query()] = None,
    case_id: Annotated[EntityId | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[EscalationOut]:
    """Open first, most overdue first."""
    f = EscalationFilter(status=status, queue=queue, case_id=case_id, limit=limit, offset=offset)
    rows = await run_in_threadpool(service.board, svc, actor, f)
    return [EscalationOut.of(EscalationSnapshot.model_validate(r.snapshot)) for r in rows]


@router.get("/escalations/{escalation_id}", response_model=EscalationOut)
async def detail(escalation_id: str, actor: BoardReader, svc: ServicesDep) -> EscalationOut:
    return EscalationOut.of(await service.read(svc, actor, escalation_id, Action.BOARD_READ))


async def _act(
    svc: ServicesDep,
    escalation_id: str,
    action: str,
    actor: Actor,
    note: str | None,
    detail: dict[str, str | None] | None = None,
) -> EscalationOut:
    act = LeadAction(action=action, actor=actor, note=note, detail=detail or {})
    return EscalationOut.of(await service.act(svc, escalation_id, act))


@router.post("/escalations/{escalation_id}/acknowledge", response_model=EscalationOut)
async def acknowledge(
    escalation_id: str, actor: BoardActor, svc: ServicesDep, body: ActionBody | None = None
) -> EscalationOut:
    return await _act(svc, escalation_id, "acknowledge", actor, body.note if body else None)


@router.post("/escalations/{escalation_id}/reassign", response_model=EscalationOut)
async def reassign(
    escalation_id: str, body: ReassignBody, actor: Reassigner, svc: ServicesDep
) -> EscalationOut:
    """Give the escalated task to an agent or back to a queue, with a fresh SLA."""
    detail = {"to_user": body.to_user, "to_queue": body.to_queue}
    return await _act(svc, escalation_id, "reassign", actor, body.note, detail)


@router.post("/escalations/{escalation_id}/resolve", response_model=EscalationOut)
async def resolve(
    escalation_id: str, body: ActionBody, actor: BoardActor, svc: ServicesDep
) -> EscalationOut:
    return await _act(svc, escalation_id, "resolve", actor, body.note)


# Last: its path would also match the fixed action paths above.
@router.post("/escalations/{escalation_id}/{decision}", response_model=EscalationOut)
async def decide(
    escalation_id: str,
    decision: Literal["approve", "reject"],
    actor: Approver,
    svc: ServicesDep,
    body: ActionBody | None = None,
) -> EscalationOut:
    """Approve or reject where the case waits on an approval; resolves the escalation."""
    return await _act(svc, escalation_id, decision, actor, body.note if body else None)
