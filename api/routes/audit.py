"""Audit: a case's timeline, its replay verdict, and its state at any moment."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api.deps import ServicesDep, require_roles
from api.schemas import AsOf, CaseOut
from api.services import audit as service
from audit.timeline import TimelineEntry
from workflows.case_models import Actor, Role

router = APIRouter(prefix="/cases", tags=["audit"])

Reader = Annotated[Actor, Depends(require_roles(Role.AUDITOR, Role.ADMIN, Role.LEAD))]
Auditor = Annotated[Actor, Depends(require_roles(Role.AUDITOR, Role.ADMIN))]


@router.get("/{case_id}/history", response_model=list[TimelineEntry])
async def history(case_id: str, _: Reader, svc: ServicesDep) -> list[TimelineEntry]:
    """Every action on the case in order, each with its instant and actor."""
    _case, entries = await service.case_timeline(svc, case_id)
    return entries


@router.post("/{case_id}/replay")
async def replay(case_id: str, _: Auditor, svc: ServicesDep) -> dict[str, Any]:
    """Replay the recorded history against the current code: intact, or where it diverges."""
    return (await service.replay(svc, case_id)).summary()


@router.get("/{case_id}/state", response_model=CaseOut)
async def state(
    case_id: str,
    _: Reader,
    svc: ServicesDep,
    as_of: AsOf,
) -> CaseOut:
    """The case as it stood at `as_of`, rebuilt from its history (not from the read model)."""
    return CaseOut.of(await service.state_at(svc, case_id, as_of))
