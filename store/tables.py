"""Casebook's own SQL tables: the case/task read model and what is not case state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, text
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
