"""Audit: a case's timeline, its replay verdict, and its state at any moment."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from access.policy import Action
from api.deps import ServicesDep, authorize
from api.schemas import AsOf, CaseOut
from api.services import audit as service
from audit.timeline import TimelineEntry
from domain.case_models import Actor

router = APIRouter(prefix="/cases", tags=["audit"])

Reader = Annotated[Actor, Depends(authorize(Action.AUDIT_READ))]
Replayer = Annotated[Actor, Depends(authorize(Action.AUDIT_REPLAY))]


@router.get("/{case_id}/history", response_model=list[TimelineEntry])
async def history(case_id: str, actor: Reader, svc: ServicesDep) -> list[TimelineEntry]:
    """Every action on the case in order, each with its instant and actor."""
    _case, entries = await service.case_timeline(svc, actor, case_id)
    return entries


@router.post("/{case_id}/replay")
async def replay(case_id: str, actor: Replayer, svc: ServicesDep) -> dict[str, Any]:
    """Replay the recorded history against the current code: intact, or where it diverges."""
    return (await service.replay(svc, actor, case_id)).summary()


@router.get("/{case_id}/state", response_model=CaseOut)
async def state(
    case_id: str,
    actor: Reader,
    svc: ServicesDep,
    as_of: AsOf,
) -> CaseOut:
    """The case as it stood at `as_of`, rebuilt from its history (not from the read model)."""
    return CaseOut.of(await service.state_at(svc, actor, case_id, as_of))
