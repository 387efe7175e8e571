"""/cases: open, list and read cases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from starlette.concurrency import run_in_threadpool

from access.policy import Action
from api.deps import ServicesDep, authorize
from api.schemas import (
    CaseCreate,
    CaseOut,
    CaseSummary,
    CaseType,
    EntityId,
    Limit,
    Offset,
    SopOut,
)
from api.services import cases as service
from domain.case_models import Actor, CaseStatus
from store.read_model import CaseFilter
from store.tables import CaseRow

router = APIRouter(prefix="/cases", tags=["cases"])

CaseOpener = Annotated[Actor, Depends(authorize(Action.OPEN_CASE))]
Lister = Annotated[Actor, Depends(authorize(Action.LIST_CASES))]
Reader = Annotated[Actor, Depends(authorize(Action.READ_CASE))]


@router.post("", status_code=201, response_model=CaseOut)
async def open_case(
    body: CaseCreate,
    actor: CaseOpener,
    svc: ServicesDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> CaseOut:
    """Open a case on the latest published SOP of its type."""
    opened = await service.open_case(svc, actor, body, idempotency_key)
    if opened.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return CaseOut.of(opened.snapshot)


@router.get("", response_model=list[CaseSummary])
async def list_cases(
    actor: Lister,
    svc: ServicesDep,
    type: CaseType | None = None,
    status: CaseStatus | None = None,
    customer_id: Annotated[EntityId | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[CaseSummary]:
    f = CaseFilter(type=type, status=status, customer_id=customer_id, limit=limit, offset=offset)
    rows = await run_in_threadpool(service.search_cases, svc, actor, f)
    return [_summary(r) for r in rows]


@router.get("/{case_id}", response_model=CaseOut)
async def get_case(case_id: str, actor: Reader, svc: ServicesDep) -> CaseOut:
    """The case as its workflow holds it: SOP version, current step, tasks, history, and
    what it waits on (`waiting_on`)."""
    snapshot = await service.read_case(svc, actor, case_id)
    return CaseOut.of(snapshot, await service.waiting_on(svc, snapshot))


def _summary(row: CaseRow) -> CaseSummary:
    return CaseSummary(
        **row.model_dump(include=set(CaseSummary.model_fields) - {"sop", "stalled"}),
        stalled=row.snapshot.get("stalled"),
        sop=SopOut(
            name=row.sop_name,
            version=row.sop_version,
            content_hash=row.snapshot["sop"]["content_hash"],
        ),
    )
