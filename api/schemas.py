"""Request and response bodies of the HTTP API (separate from tables and workflow models)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from workflows.case_models import CaseSnapshot, EscalationLink, HistoryEntry, Task
from workflows.escalation_models import EscalationSnapshot

CaseType = Literal["dispute", "collection", "credit_review"]
_AMOUNT = re.compile(r"^\d{1,15}(\.\d{1,4})?$")
_Name = Field(min_length=1, max_length=128)


class CaseCreate(BaseModel):
    type: CaseType
    customer_id: str = _Name
    invoice_ids: list[str] = Field(default_factory=list, max_length=500)
    amount: Decimal = Field(description='a decimal string such as "1250.00", never a float')
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD")
    region: str = Field(min_length=2, max_length=16, description="business calendar, e.g. SG")
    reason_code: str | None = Field(default=None, max_length=64)
    vendor: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("amount", mode="before")
    @classmethod
    def _exact_decimal(cls, value: Any) -> Any:
        # A JSON number may already have lost cents to binary floating point: refuse it.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError('send the amount as a decimal string such as "1250.00"')
        text = str(value).strip()
        if not _AMOUNT.match(text):
            raise ValueError("must be a positive decimal with at most 4 decimal places")
        if Decimal(text) <= 0:
            raise ValueError("must be greater than zero")
        return text

    @field_validator("invoice_ids")
    @classmethod
    def _non_empty_ids(cls, value: list[str]) -> list[str]:
        if any(not v.strip() for v in value):
            raise ValueError("invoice ids must be non-empty strings")
        return value


class SopOut(BaseModel):
    name: str
    version: int
    content_hash: str


class TaskOut(BaseModel):
    id: str
    case_id: str
    step: str
    title: str
    queue: str
    status: str
    assignee: str | None
    priority: int
    allowed_outcomes: list[str]
    vendor: str | None
    created_at: datetime
    claimed_at: datetime | None
    completed_at: datetime | None
    outcome: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None
    sla_due: datetime | None = None
    sla_warning_at: datetime | None = None
    sla_paused: bool = False
    sla_state: str | None = None
    pause_reason: str | None = None
    paused_until: datetime | None = None

    @classmethod
    def of(cls, task: Task | Any) -> TaskOut:
        return cls.model_validate(task, from_attributes=True)


class CaseSummary(BaseModel):
    id: str
    type: str
    status: str
    customer_id: str
    amount: str
    currency: str
    region: str
    reason_code: str | None
    vendor: str | None
    sop: SopOut
    current_step: str | None
    resolution: str | None
    opened_at: datetime
    closed_at: datetime | None


class CaseOut(CaseSummary):
    invoice_ids: list[str]
    data: dict[str, Any]
    opened_by: str
    tasks: list[TaskOut]
    escalations: list[EscalationLink]
    history: list[HistoryEntry]
    revision: int

    @classmethod
    def of(cls, s: CaseSnapshot) -> CaseOut:
        return cls(
            **s.model_dump(exclude={"tasks", "history", "sop", "amount", "status", "escalations"}),
            escalations=s.escalations,
            status=s.status.value,
            amount=str(s.amount),
            sop=SopOut(**s.sop.model_dump()),
            tasks=[TaskOut.of(t) for t in s.tasks],
            history=s.history,
        )


class CompleteBody(BaseModel):
    outcome: str = Field(min_length=1)
    data: dict[str, Any] = Field(default_factory=dict)
    note: str | None = Field(default=None, max_length=4000)


class PauseBody(BaseModel):
    reason: str = Field(min_length=1, max_length=200, examples=["awaiting_customer"])
    until: datetime | None = Field(default=None, description="resume by itself at this instant")


class EscalateBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)
    task_id: str | None = None


class ReassignBody(BaseModel):
    to_user: str | None = None
    to_queue: str | None = None
    note: str | None = Field(default=None, max_length=4000)


class ActionBody(BaseModel):
    note: str | None = Field(default=None, max_length=4000)


class EscalationOut(BaseModel):
    id: str
    case_id: str
    task_id: str | None
    step: str | None
    kind: str
    reason: str
    status: str
    level: int
    level_name: str
    queue: str
    owner: str | None
    vendor: str | None
    region: str
    opened_at: datetime
    due_at: datetime | None
    resolved_at: datetime | None
    history: list[HistoryEntry] = Field(default_factory=list)

    @classmethod
    def of(cls, esc: EscalationSnapshot) -> EscalationOut:
        return cls.model_validate(esc.model_dump())
