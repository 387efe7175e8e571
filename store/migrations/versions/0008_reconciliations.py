"""reconciliations: each repair of the read model from Temporal's state, recorded

Revision ID: 0008_reconciliations
Revises: 0007_escalation_matrix
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_reconciliations"
down_revision: str | None = "0007_escalation_matrix"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconciliations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(), nullable=False),
        sa.Column("escalation_id", sa.String(), nullable=True),
        sa.Column("repaired_at", sa.DateTime(), nullable=False),
        sa.Column("read_model_revision", sa.Integer(), nullable=True),
        sa.Column("temporal_revision", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("differences", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reconciliations_case_id", "reconciliations", ["case_id"])
    op.create_index("ix_reconciliations_repaired_at", "reconciliations", ["repaired_at"])


def downgrade() -> None:
    op.drop_index("ix_reconciliations_repaired_at", table_name="reconciliations")
    op.drop_index("ix_reconciliations_case_id", table_name="reconciliations")
    op.drop_table("reconciliations")
