"""Sweeps that open cases from what billing shows: overdue collections, credit reviews."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from access.policy import Action
from api.deps import ServicesDep, authorize
from api.schemas import Day, EntityId, Region, RequestBody
from api.services import collections, credit_reviews
from api.services.sweeps import SweepLine, SweepStatus, VendorChoice
from domain.case_models import Actor

router = APIRouter(tags=["sweeps"])

Sweeper = Annotated[Actor, Depends(authorize(Action.SWEEP))]


class SweepBody(RequestBody):
    region: Region | None = Field(
        default=None,
        description="the calendar of customers billing has no region for (each case runs on "
        "its customer's region from billing's master data); without it such customers are "
        "skipped",
    )
    as_of: Day | None = Field(default=None, description="the day to sweep as of; today")
    vendor: EntityId | None = Field(default=None, description="the vendor the new cases belong to")
    customer_vendors: dict[EntityId, EntityId] = Field(
        default_factory=dict,
        max_length=10_000,
        description="vendor by customer id, before `vendor`; a case with neither has none",
    )

    def vendors(self) -> VendorChoice:
        return VendorChoice(self.vendor, self.customer_vendors)


class OverdueScanBody(SweepBody):
    min_days_past_due: int = Field(default=1, ge=0, le=3650, strict=True)


class CreditReviewSweepBody(SweepBody):
    reason: credit_reviews.SweepReason = "periodic"
    period: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,32}$",
        description="one case per customer and period; default the quarter (2026Q4), or "
        "the day for limit breaches",
    )


class SweepLineOut(BaseModel):
    customer_id: str
    status: SweepStatus
    case_id: str | None = Field(description="none when the record was skipped")
    invoice_ids: list[str]
    amount: Decimal | None
    reason: str | None = Field(default=None, description="why a record was skipped")


class SweepOut(BaseModel):
    opened: int = Field(description="cases this call started (not those it joined or found)")
    skipped: int = Field(description="billing records that could not open a case")
    lines: list[SweepLineOut]

    @classmethod
    def of(cls, lines: list[SweepLine]) -> SweepOut:
        return cls(
            opened=sum(1 for line in lines if line.status == "opened"),
            skipped=sum(1 for line in lines if line.status == "skipped"),
            lines=[SweepLineOut(**vars(line)) for line in lines],
        )


@router.post("/collections/overdue-scan", response_model=SweepOut)
async def overdue_scan(body: OverdueScanBody, actor: Sweeper, svc: ServicesDep) -> SweepOut:
    """One collection case per customer with overdue invoices; run it as often as you like."""
    return SweepOut.of(
        await collections.scan_overdue(
            svc, actor, body.region, body.as_of, body.min_days_past_due, body.vendors()
        )
    )


@router.post("/credit-reviews/sweep", response_model=SweepOut)
async def credit_review_sweep(
    body: CreditReviewSweepBody, actor: Sweeper, svc: ServicesDep
) -> SweepOut:
    """A credit review per customer (periodic), or per customer above its limit."""
    return SweepOut.of(
        await credit_reviews.sweep_credit_reviews(
            svc, actor, body.region, body.reason, body.period, body.as_of, body.vendors()
        )
    )
