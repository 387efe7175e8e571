"""Casebook's own SQL tables: the case/task read model and what is not case state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class CaseRow(SQLModel, table=True):
    """Read model of a case, written only by the projection (newest revision wins)."""

    __tablename__ = "case_view"

    id: str = Field(primary_key=True)
    type: str = Field(index=True)
    status: str = Field(index=True)
    customer_id: str = Field(index=True)
    vendor: str | None = Field(default=None, index=True)
    amount: str  # exact decimal text: money never goes through a float
    currency: str
    region: str
    reason_code: str | None = None
    sop_name: str
    sop_version: int
    current_step: str | None = None
    resolution: str | None = None
    opened_by: str
    opened_at: datetime = Field(index=True)
    closed_at: datetime | None = None
    revision: int
    snapshot: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class TaskRow(SQLModel, table=True):
    """Read model of a task: what inboxes and claim-next search."""

    __tablename__ = "task_view"
    __table_args__ = (
        # The inbox's whole ORDER BY (store/read_model.list_tasks); migration 0004.
        Index(
            "ix_task_inbox_order",
            "queue",
            "status",
            text("priority DESC"),
            text("(sla_due IS NULL)"),
            "sla_due",
            "created_at",
            "id",
        ),
    )

    id: str = Field(primary_key=True)
    case_id: str = Field(index=True)
    case_type: str
    step: str
    title: str = ""
    queue: str
    status: str
    assignee: str | None = Field(default=None, index=True)
    priority: int
    allowed_outcomes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    vendor: str | None = None
    created_at: datetime
    claimed_at: datetime | None = None
    completed_at: datetime | None = None
    outcome: str | None = None
    sla_due: datetime | None = None
    sla_warning_at: datetime | None = None
    sla_paused: bool = False
    sla_state: str | None = None
    revision: int


class UserRow(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    role: str
    vendor: str | None = None
    cross_vendor: bool = (
        False  # an agent that works every vendor's cases (migration 0006_cross_vendor)
    )
    email: str | None = None
    queues: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    token_hash: str = Field(unique=True)
    created_at: datetime
    # Token lifecycle (migration 0005_command_keys_user_tokens): a disabled or expired
    # token answers 401; `last_used_at` is written at most once a minute per user.
    disabled_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class SopVersionRow(SQLModel, table=True):
    __tablename__ = "sop_versions"

    name: str = Field(primary_key=True)
    version: int = Field(primary_key=True)
    status: str  # draft, published, retired
    case_type: str
    content: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    content_hash: str
    created_at: datetime
    created_by: str
    published_at: datetime | None = None
    published_by: str | None = None
    # A hypercare window opened at publication (migration 0010_hypercare): its length, how
    # much earlier its steps warn, its end, and where its owner (`published_by`) is told.
    hypercare_days: int | None = None
    hypercare_warn_factor: float | None = None
    hypercare_until: datetime | None = None
    hypercare_owner_email: str | None = None


class EscalationMatrixVersionRow(SQLModel, table=True):
    """A version of the escalation matrix (migration 0007_escalation_matrix): draft, then
    published (immutable; new cases pin the highest published), then retired."""

    __tablename__ = "escalation_matrix_versions"

    version: int = Field(primary_key=True)
    status: str  # draft, published, retired
    content: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    content_hash: str
    note: str | None = None  # what the author says changed
    created_at: datetime
    created_by: str
    published_at: datetime | None = None
    published_by: str | None = None
    retired_at: datetime | None = None
    retired_by: str | None = None


class IdempotencyKeyRow(SQLModel, table=True):
    """A `POST /cases` Idempotency-Key, so a retried request returns the same case."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int
    key: str
    request_hash: str
    case_id: str
    created_at: datetime


class CommandKeyRow(SQLModel, table=True):
    """A task command's or escalation's Idempotency-Key: which request it named (by hash)
    and, once known, the answer a retry repeats. Migration 0005_command_keys_user_tokens."""

    __tablename__ = "command_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "key"),
        # Another user's use of the same key on the same target is refused, not answered.
        Index("ix_command_keys_target_key", "target", "key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int
    key: str
    command: str  # the Update's name: complete_task, escalate, ...
    target: str  # the task id, or the case id for an escalation
    request_hash: str
    answer: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime
    answered_at: datetime | None = None


class EscalationRow(SQLModel, table=True):
    """Read model of an escalation: the lead board orders by status, then how overdue."""

    __tablename__ = "escalation_view"
    __table_args__ = (Index("ix_escalation_board", "status", "due_at"),)

    id: str = Field(primary_key=True)
    case_id: str = Field(index=True)
    task_id: str | None = None
    step: str | None = None
    kind: str  # sla_breach or manual
    reason: str
    level: int
    level_name: str
    queue: str = Field(index=True)
    status: str  # open, acknowledged, resolved
    owner: str | None = None
    vendor: str | None = None
    region: str
    opened_at: datetime
    due_at: datetime | None = None
    resolved_at: datetime | None = None
    revision: int
    snapshot: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class OutboxRow(SQLModel, table=True):
    """Every email Casebook sends: written before sending, so a retry never sends twice."""

    __tablename__ = "email_outbox"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    case_id: str | None = Field(default=None, index=True)
    template: str
    sender: str
    recipients: list[str] = Field(sa_column=Column(JSON, nullable=False))
    subject: str
    body_text: str
    body_html: str | None = None
    status: str  # pending, sent
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None


class CaseArchiveRow(SQLModel, table=True):
    """A closed case's full Temporal history, kept for years: gzip, SHA-256, hash-chained.

    `chain_hash` = SHA-256 of the previous row's chain hash, the case id and this history's
    hash, so removing or altering any archived case breaks every later link.
    """

    __tablename__ = "case_archive"

    seq: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(unique=True)
    archived_at: datetime
    history_gz: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    history_sha256: str
    prev_chain_hash: str = Field(unique=True)  # one successor per link: the chain never forks
    chain_hash: str = Field(unique=True)


class ReconciliationRow(SQLModel, table=True):
    """A repair of the read model by the reconciler: which case (or escalation), what
    differed, from what to what revision, when. Migration 0008_reconciliations."""

    __tablename__ = "reconciliations"

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(index=True)
    escalation_id: str | None = None  # set when the board's row was repaired, not the case's
    repaired_at: datetime = Field(index=True)
    read_model_revision: int | None  # None: the read model had no row for the case
    temporal_revision: int
    source: str  # "query" (the running workflow) or "history" (replayed from history)
    differences: list[str] = Field(sa_column=Column(JSON, nullable=False))


class FactRow(SQLModel, table=True):
    """One fact per task, escalation and case: what the reports count (store/facts.py).

    Written by the read-model projection in the same transaction as the case row it comes
    from, keyed by `<kind>:<id>`, so a repeated or replayed projection replaces a fact and
    never adds one (migration 0009_facts). Pauses are seconds, the durations integer
    microseconds (migration 0011_fact_durations); amounts exact text.
    """

    __tablename__ = "facts"
    __table_args__ = (
        Index("ix_facts_report", "kind", "vendor", "opened_at"),
        Index("ix_facts_case", "case_id"),
        Index("ix_facts_done", "kind", "vendor", "completed_at"),
    )

    id: str = Field(primary_key=True)  # task:<id>, escalation:<id>, case:<id>
    kind: str  # task, escalation, case
    subject_id: str
    case_id: str
    case_type: str
    vendor: str | None = None
    region: str
    queue: str | None = None
    step: str | None = None
    sop_name: str
    sop_version: int
    assignee: str | None = None
    reason_code: str | None = None
    status: str
    outcome: str | None = None  # a task's outcome, a case's resolution, an escalation's end
    opened_at: datetime
    first_touch_at: datetime | None = None  # first claim; an escalation's acknowledgement
    claimed_at: datetime | None = None  # the claim the task was completed under
    completed_at: datetime | None = None  # done, closed or resolved
    sla_due: datetime | None = None
    sla_warning_at: datetime | None = None
    sla_breached: bool = False
    breached_at: datetime | None = None
    paused_seconds: float = 0  # wall time the SLA clock stood still
    paused_business_seconds: float = 0  # the same, in the region's working hours
    reassignments: int = 0
    loop_backs: int = 0  # a task: 1 when its step ran before; a case: such tasks
    reopens: int = 0
    billing_refusals: int = 0
    escalations: int = 0
    level: int = 0  # an escalation's highest level (0: the lead)
    escalation_kind: str | None = None
    currency: str
    amount: str  # the case's amount (the disputed or overdue amount)
    amount_credited: str = "0"
    events_seen: int = 0  # a case fact: history entries already counted (absolute index)
    # Durations in integer microseconds, from the instants above (store/facts.durations;
    # migration 0011_fact_durations): what the reports' averages and medians read.
    first_touch_us: int | None = Field(default=None, sa_type=BigInteger)
    handle_us: int | None = Field(default=None, sa_type=BigInteger)
    cycle_us: int | None = Field(default=None, sa_type=BigInteger)
    work_us: int | None = Field(default=None, sa_type=BigInteger)
