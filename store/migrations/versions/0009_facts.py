"""facts: one row per task, escalation and case, what the reports count

Written by the read-model projection (store/facts.py); `casebook store rebuild` fills it
for cases that ran before it existed.

Revision ID: 0009_facts
Revises: 0008_reconciliations
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009_facts"
down_revision: str | None = "0008_reconciliations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    instant = sqlmodel.sql.sqltypes.UTCDateTime()
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "facts",
        sa.Column("id", text(), primary_key=True),
        sa.Column("kind", text(), nullable=False),
        sa.Column("subject_id", text(), nullable=False),
        sa.Column("case_id", text(), nullable=False),
        sa.Column("case_type", text(), nullable=False),
        sa.Column("vendor", text(), nullable=True),
        sa.Column("region", text(), nullable=False),
        sa.Column("queue", text(), nullable=True),
        sa.Column("step", text(), nullable=True),
        sa.Column("sop_name", text(), nullable=False),
        sa.Column("sop_version", sa.Integer(), nullable=False),
        sa.Column("assignee", text(), nullable=True),
        sa.Column("reason_code", text(), nullable=True),
        sa.Column("status", text(), nullable=False),
        sa.Column("outcome", text(), nullable=True),
        sa.Column("opened_at", instant, nullable=False),
        sa.Column("first_touch_at", instant, nullable=True),
        sa.Column("claimed_at", instant, nullable=True),
        sa.Column("completed_at", instant, nullable=True),
        sa.Column("sla_due", instant, nullable=True),
        sa.Column("sla_warning_at", instant, nullable=True),
        sa.Column("sla_breached", sa.Boolean(), nullable=False),
        sa.Column("breached_at", instant, nullable=True),
        sa.Column("paused_seconds", sa.Float(), nullable=False),
        sa.Column("paused_business_seconds", sa.Float(), nullable=False),
        sa.Column("reassignments", sa.Integer(), nullable=False),
        sa.Column("loop_backs", sa.Integer(), nullable=False),
        sa.Column("reopens", sa.Integer(), nullable=False),
        sa.Column("billing_refusals", sa.Integer(), nullable=False),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("escalation_kind", text(), nullable=True),
        sa.Column("currency", text(), nullable=False),
        sa.Column("amount", text(), nullable=False),
        sa.Column("amount_credited", text(), nullable=False),
        sa.Column("events_seen", sa.Integer(), nullable=False),
    )
    op.create_index("ix_facts_report", "facts", ["kind", "vendor", "opened_at"])
    op.create_index("ix_facts_case", "facts", ["case_id"])
    op.create_index("ix_facts_done", "facts", ["kind", "vendor", "completed_at"])


def downgrade() -> None:
    op.drop_index("ix_facts_done", table_name="facts")
    op.drop_index("ix_facts_case", table_name="facts")
    op.drop_index("ix_facts_report", table_name="facts")
    op.drop_table("facts")
