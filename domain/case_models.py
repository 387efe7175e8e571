"""What crosses the Temporal boundary for a case: its input, its state and its commands.

Plain pydantic models (never SQL tables), carried by the pydantic data converter. Each
workflow entry point takes one model, so fields can be added without breaking histories.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from escalations.calendars import CalendarFacts
from escalations.matrix import CASE_ROUTE, EscalationRoute
from escalations.sla_clock import SlaClock, UtcDatetime
from sop_templates.schema import SopTemplate


class Role(StrEnum):
    AGENT = "agent"
    LEAD = "lead"
    SOP_OWNER = "sop_owner"
    AUDITOR = "auditor"
    ADMIN = "admin"
    SYSTEM = "system"


class Actor(BaseModel):
    """Who asks: reaches the workflow with every command, so its history says who did what."""

    user_id: int | None = None
    name: str
    role: Role
    vendor: str | None = None
    queues: list[str] = Field(default_factory=list)
    # Works every vendor's cases (`casebook user add --cross-vendor`); see access/policy.py.
    cross_vendor: bool = False
    # Bound to a vendor, yet sees vendor-less cases: CASEBOOK_VENDORLESS_CASES=shared when
    # the API admitted the request (recorded with the command, as the grant it ran under).
    shared_vendorless: bool = False


class SopRef(BaseModel):
    name: str
    version: int
    content_hash: str


# A hypercare window lasts 1 to 90 days after its version's publication.
HYPERCARE_MAX_DAYS = 90


class HypercareTerms(BaseModel):
    """What an SOP owner asks for when publishing a version under hypercare: how many days
    the window lasts, and how much earlier its steps warn (`warn_factor`: the share of the
    usual time-to-warning; 1 warns as usual, 0.5 warns after half the usual time, so a
    step that warns at 80% of its SLA warns at 40%)."""

    model_config = ConfigDict(extra="forbid")

    days: int = Field(ge=1, le=HYPERCARE_MAX_DAYS, description="length of the window in days")
    warn_factor: float = Field(
        gt=0, le=1, description="share of the usual time-to-warning, in (0, 1]"
    )


class HypercareWindow(BaseModel):
    """A published SOP version's hypercare window, pinned into the input of each case opened
    inside it (as the escalation matrix is), so a replay never reads the database."""

    model_config = ConfigDict(frozen=True)

    sop_name: str
    sop_version: int
    since: UtcDatetime  # the version's publication
    until: UtcDatetime
    warn_factor: float = Field(gt=0, le=1)
    owner: str  # the SOP owner who published it: every breach of such a case reaches them
    owner_email: str

    def covers(self, at: datetime) -> bool:
        return self.since <= at < self.until

    def history_detail(self) -> dict[str, Any]:
        """The case's `hypercare` history entry: until when, by what factor, who is told."""
        return {
            "sop": self.sop_name,
            "sop_version": self.sop_version,
            "until": self.until.isoformat(),
            "warn_factor": self.warn_factor,
            "owner": self.owner,
        }

    def warning_ratio(self, ratio: float, at: datetime) -> float:
        """A clock's warning ratio for work started at `at`: earlier by the factor inside
        the window, as usual after it."""
        return ratio * self.warn_factor if self.covers(at) else ratio


class CaseInput(BaseModel):
    case_id: str
    case_type: str
    customer_id: str
    invoice_ids: list[str] = Field(default_factory=list)
    amount: Decimal
    currency: str
    region: str
    reason_code: str | None = None
    vendor: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    opened_by: Actor
    sop: SopRef
    template: SopTemplate
    # Resolved from the escalation matrix at intake (by queue; "*" for the case as a whole),
    # so a replay years later routes exactly as the case did.
    escalation_routes: dict[str, EscalationRoute] = Field(default_factory=dict)
    # The escalation matrix version those routes came from (None: opened before versions).
    escalation_matrix_version: int | None = None

    @field_validator("escalation_routes")
    @classmethod
    def _routes_cover_the_case(
        cls, routes: dict[str, EscalationRoute]
    ) -> dict[str, EscalationRoute]:
        # The workflow never reads the matrix: a case it cannot route must not start.
        if CASE_ROUTE not in routes:
            raise ValueError(f"needs the route of the case as a whole ({CASE_ROUTE!r})")
        return routes

    public_url: str = ""
    # The business calendars its SLAs count on, as they stood at intake: replays never
    # read the calendar file or the holidays package (see `ApplyCalendars` for changes).
    calendars: list[CalendarFacts] = Field(default_factory=list)
    # Continue-as-new: the case as the previous run of this workflow id left it (None for
    # a new case), and how many Updates a run takes before it continues as new (Temporal
    # caps a run at 2,000 Updates and 50 MB of history).
    state: CaseSnapshot | None = None
    continue_after_updates: int = Field(default=500, ge=1, le=1500)
    # ... or once this run's own past (history entries, done tasks: what continue-as-new
    # leaves behind) is this large as JSON: the projection, the Update results and the
    # workflow's result then never carry more than about this much of the case.
    continue_above_bytes: int = Field(default=12_288, ge=1_024)
    # The revision the previous run had projected: the new run projects what came after.
    projected_revision: int = 0
    # The hypercare window of its SOP version when the case was opened inside one.
    hypercare: HypercareWindow | None = None


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class TaskStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    DONE = "done"


class SlaState(StrEnum):
    ON_TIME = "on_time"
    WARNING = "warning"
    BREACHED = "breached"


# The kinds of error a task for a person carries in its `data` (the key the error is under):
# the SOP failed at run time (a history entry of that name too), billing refused a call
# (recorded as BILLING_REFUSED), an email can never go as it is.
SOP_ERROR = "sop_error"
BILLING_ERROR = "billing_error"
EMAIL_ERROR = "email_error"
BILLING_REFUSED = "billing_refused"


class Task(BaseModel):
    id: str
    case_id: str
    step: str
    title: str = ""
    queue: str
    status: TaskStatus = TaskStatus.OPEN
    assignee: str | None = None
    priority: int
    allowed_outcomes: list[str]
    vendor: str | None = None
    created_at: datetime
    claimed_at: datetime | None = None
    completed_at: datetime | None = None
    outcome: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None
    # The typed fields its completion may carry (the step's `fields`); None: free-form.
    fields: dict[str, str] | None = None
    sla: SlaClock | None = None
    sla_due: datetime | None = None
    sla_warning_at: datetime | None = None
    sla_paused: bool = False
    sla_state: SlaState | None = None
    pause_reason: str | None = None
    paused_until: datetime | None = None
    # Business time left on the clock while it is paused (frozen; `sla_due` is None then).
    sla_left_seconds: float | None = None


class EscalationLink(BaseModel):
    """An escalation of this case; `started` once its workflow runs."""

    id: str
    kind: str
    reason: str
    task_id: str | None
    step: str | None
    queue: str
    opened_at: datetime
    opened_by: str
    late_by_seconds: float = 0
    status: str = "open"
    started: bool = False
    # An approval's task was decided and its escalation told so (see CaseWorkflow).
    settled: bool = False


class PendingAction(BaseModel):
    """An automatic step the workflow must carry out (an email, a billing call)."""

    step: str
    kind: str
    idempotency_key: str


class Outage(BaseModel):
    """A billing call or an email retried while the system it reaches is down
    (`workflows/case_outages.py`); gone from the case once the call went through."""

    system: str  # billing | email
    step: str
    idempotency_key: str
    began_at: datetime
    attempts: int  # failed so far
    last_error: str
    last_attempt_at: datetime
    retry_at: datetime | None = None


class HistoryEntry(BaseModel):
    at: datetime
    event: str
    step: str | None = None
    task_id: str | None = None
    actor: str | None = None
    outcome: str | None = None
    note: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class CaseSnapshot(BaseModel):
    """The whole case as the workflow holds it; `revision` grows with every change."""

    id: str
    type: str
    status: CaseStatus = CaseStatus.OPEN
    customer_id: str
    invoice_ids: list[str]
    amount: Decimal
    currency: str
    region: str
    reason_code: str | None
    vendor: str | None
    data: dict[str, Any]
    sop: SopRef
    current_step: str | None = None
    resolution: str | None = None
    opened_by: str
    opened_at: datetime
    closed_at: datetime | None = None
    tasks: list[Task] = Field(default_factory=list)
    escalations: list[EscalationLink] = Field(default_factory=list)
    pending_action: PendingAction | None = None
    # Emails a person asked to send again; the main loop sends them beside the case.
    email_retries: list[PendingAction] = Field(default_factory=list)
    waiting_until: datetime | None = None
    # Calls retried through an outage of billing or SMTP (cases since `outage-visible`).
    outages: list[Outage] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    # `history` holds the entries from this index on (a projection carries only the new
    # ones, so its events in Temporal's history never grow with the case's whole past).
    history_offset: int = 0
    revision: int = 0
    # An SOP error at run time opens a task for a person instead of failing the workflow
    # task (cases started since the `sop-errors-become-work` patch); `stalled` says why the
    # case waits on that person.
    errors_become_work: bool = False
    stalled: str | None = None
    # Calendar name -> digest of the pinned facts its clocks count on.
    calendars: dict[str, str] = Field(default_factory=dict)
    # Continue-as-new (workflows/case_carry.py) carries the case into a new run with its
    # past compacted: earlier runs' histories hold what is no longer carried.
    run: int = 1  # which run of the workflow id holds this state
    earlier_entries: int = 0  # history entries recorded by earlier runs
    # The first entries of `history` are copies kept from earlier runs for the rules
    # (the latest decision and its approvals), not new events.
    carried_entries: int = 0
    earlier_tasks: int = 0  # done tasks of earlier runs no longer carried (task numbering)
    # "<event>:<step>" -> entries of earlier runs no longer carried (n-th entry keys).
    earlier_counts: dict[str, int] = Field(default_factory=dict)
    # The escalation matrix version its routes were resolved from at intake.
    escalation_matrix_version: int | None = None
    # Notes for open escalations not yet delivered to them (see `EscalationNote`).
    escalation_notes: list[EscalationNote] = Field(default_factory=list)
    # Its SOP version's hypercare window, when opened inside one (patch `hypercare`).
    hypercare: HypercareWindow | None = None

    def task(self, task_id: str) -> Task | None:
        return next((t for t in self.tasks if t.id == task_id), None)


class CommandResult(BaseModel):
    """What an Update answers: the task or escalation it concerned and where the case
    stands, never the case itself (Temporal stores every Update's result in the case's
    history: a whole snapshot in each made the history grow with the square of the
    Updates). Readers use the `snapshot` query or the read model."""

    case_id: str
    revision: int
    status: CaseStatus
    task: Task | None = None
    escalation: EscalationLink | None = None
    joined: bool = False  # `escalate` joined an open escalation instead of opening one


class ClaimTask(BaseModel):
    task_id: str
    actor: Actor


class ReleaseTask(BaseModel):
    task_id: str
    actor: Actor


class CompleteTask(BaseModel):
    task_id: str
    actor: Actor
    outcome: str
    data: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None


class PauseTask(BaseModel):
    task_id: str
    actor: Actor
    reason: str
    until: datetime | None = None


class ResumeTask(BaseModel):
    task_id: str
    actor: Actor


class ReassignTask(BaseModel):
    """A lead gives a task to a person (claimed by them) or back to a queue, with a fresh SLA."""

    task_id: str
    actor: Actor
    to_user: str | None = None
    # The user `to_user` names, resolved by the API: the validator checks that it may work
    # the task (role, queue, vendor). Absent from commands recorded before it existed.
    to_actor: Actor | None = None
    to_queue: str | None = None
    note: str | None = None


class EscalateCase(BaseModel):
    actor: Actor
    reason: str
    task_id: str | None = None


class EscalationNote(BaseModel):
    """A manual escalation of work already escalated: it joins the open escalation as a
    note (the case signals it to the escalation, which records it on its history)."""

    escalation_id: str
    by: str
    note: str
    at: datetime


class EscalationEvent(BaseModel):
    """Sent by an escalation to its case, so the case's history shows who acted."""

    escalation_id: str
    event: str
    actor: str | None = None
    note: str | None = None
    status: str | None = None


class MigrateSop(BaseModel):
    """Move a running case onto another version of its SOP, at a safe point (an Update)."""

    actor: Actor
    sop: SopRef
    template: SopTemplate


class ApplyCalendars(BaseModel):
    """Move a running case's clocks onto changed calendars (holidays, closures, hours)."""

    actor: Actor
    calendars: list[CalendarFacts]


CaseInput.model_rebuild()  # its carried `state` is defined after it


# What a case waits on at a moment (`workflows/case_waiting.py` computes it).
class WaitingTask(BaseModel):
    """An open task: the case waits on a person."""

    task_id: str
    step: str
    title: str
    queue: str
    status: str
    assignee: str | None
    # The deadline in business time on the case's calendar; None while paused.
    due: datetime | None
    # Business time left; frozen while paused; None without an SLA (or a calendar to count
    # on, where the case is read without its workflow).
    time_left_seconds: float | None
    sla_state: str | None
    paused: bool
    pause_reason: str | None
    paused_until: datetime | None  # the pause ends by itself then


class WaitingTimer(BaseModel):
    """A `wait` step: the case goes on by itself at `until` (wall time)."""

    step: str
    title: str
    # `after`: a delay from when the step began; `until`: a date the case holds (a promise).
    kind: str
    until: datetime
    seconds_left: float


class WaitingEscalation(BaseModel):
    """An escalation not yet resolved: the case waits on a lead."""

    escalation_id: str
    kind: str
    status: str
    queue: str
    task_id: str | None
    reason: str
    opened_at: datetime


class WaitingOn(BaseModel):
    at: datetime
    tasks: list[WaitingTask] = Field(default_factory=list)
    timers: list[WaitingTimer] = Field(default_factory=list)
    outages: list[Outage] = Field(default_factory=list)
    escalations: list[WaitingEscalation] = Field(default_factory=list)
    # The automatic step (billing call, email) the case is carrying out, if any.
    action: PendingAction | None = None
    # Why the case waits on a person after an SOP error at run time.
    stalled: str | None = None
