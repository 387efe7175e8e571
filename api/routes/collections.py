"""/collections/overdue-scan: open collection cases for what billing shows overdue."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import ServicesDep, require_roles
from api.services import collections as service
from workflows.case_models import Actor, Role

router = APIRouter(tags=["collections"])

Scanner = Annotated[Actor, Depends(require_roles(Role.LEAD, Role.ADMIN))]


class ScanBody(BaseModel):
    region: str = Field(min_length=2, max_length=16, description="calendar of the new cases")
    as_of: date | None = Field(default=None, description="day to age invoices to; today")
    min_days_past_due: int = Field(default=1, ge=0)


class ScanLineOut(BaseModel):
    customer_id: str
    status: service.ScanStatus
    case_id: str
    invoice_ids: list[str]
    overdue_amount: Decimal


class ScanOut(BaseModel):
    opened: int
    lines: list[ScanLineOut]


@router.post("/collections/overdue-scan", response_model=ScanOut)
async def overdue_scan(body: ScanBody, actor: Scanner, svc: ServicesDep) -> ScanOut:
    """One collection case per customer with overdue invoices; run it as often as you like."""
    lines = await service.scan_overdue(svc, actor, body.region, body.as_of, body.min_days_past_due)
    return ScanOut(
        opened=sum(1 for line in lines if line.status == "opened"),
        lines=[ScanLineOut(**vars(line)) for line in lines],
    )
