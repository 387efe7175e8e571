"""What crosses the Temporal boundary for an escalation: its input, state and lead actions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from domain.case_models import Actor, HistoryEntry, HypercareWindow
from escalations.calendars import CalendarFacts
from escalations.matrix import EscalationRoute


class EscalationKind(StrEnum):
    SLA_BREACH = "sla_breach"
    MANUAL = "manual"
    APPROVAL = "approval"


class EscalationStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class EscalationInput(BaseModel):
    escalation_id: str
    case_id: str
    case_type: str
    task_id: str | None
    step: str | None
    kind: EscalationKind
    reason: str
    region: str
    vendor: str | None
    opened_by: str
    late_by_seconds: float = 0
    # When the escalated work became late (its SLA due), for an SLA breach; notices count
    # the lateness from it. None: started before it was carried (counted from opened_at).
    breached_at: datetime | None = None
    route: EscalationRoute
    public_url: str = ""
    # The region's calendar as the case pinned it (None: the shipped one, older cases).
    calendar: CalendarFacts | None = None
    # A breach of a case opened in its SOP version's hypercare window: its SOP owner is
    # notified too (patch `hypercare`).
    hypercare: HypercareWindow | None = None


class EscalationSnapshot(BaseModel):
    id: str
    case_id: str
    case_type: str
    task_id: str | None
    step: str | None
    kind: EscalationKind
    reason: str
    region: str
    vendor: str | None
    status: EscalationStatus = EscalationStatus.OPEN
    level: int = 0
    level_name: str
    queue: str
    owner: str | None = None
    opened_by: str
    opened_at: datetime
    due_at: datetime | None = None
    level_breached: bool = False
    resolved_at: datetime | None = None
    resolution_note: str | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    revision: int = 0
    # How many manual escalations of the same work joined this one (each a note).
    joined: int = 0


class TaskDecision(BaseModel):
    """Signal from a case: the escalated task (an approval) was decided on the case."""

    by: str
    outcome: str
    note: str | None = None


class LeadAction(BaseModel):
    """acknowledge, reassign, approve, reject or resolve, by a lead (recorded on both sides)."""

    action: str
    actor: Actor
    note: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
