"""escalation matrix: the matrix as versioned data (draft, published, retired), with who
changed it and when

The shipped `escalations/matrix.yaml` becomes version 1 when Casebook first starts (or
when intake first needs a matrix): `escalations/matrix_registry.seed_shipped_matrix`.

Revision ID: 0007_escalation_matrix
Revises: 0006_cross_vendor
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007_escalation_matrix"
down_revision: str | None = "0006_cross_vendor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    moment = sqlmodel.sql.sqltypes.UTCDateTime
    op.create_table(
        "escalation_matrix_versions",
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("status", text(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("content_hash", text(), nullable=False),
        sa.Column("note", text(), nullable=True),
        sa.Column("created_at", moment(), nullable=False),
        sa.Column("created_by", text(), nullable=False),
        sa.Column("published_at", moment(), nullable=True),
        sa.Column("published_by", text(), nullable=True),
        sa.Column("retired_at", moment(), nullable=True),
        sa.Column("retired_by", text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("escalation_matrix_versions")
