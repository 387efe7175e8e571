"""hypercare: an SOP version may be published with a hypercare window

Its length in days, the factor its steps' SLA warnings come earlier by, its end, and the
address of the SOP owner who published it. Versions published before have none.

Revision ID: 0010_hypercare
Revises: 0009_facts
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010_hypercare"
down_revision: str | None = "0009_facts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sop_versions") as batch:
        batch.add_column(sa.Column("hypercare_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("hypercare_warn_factor", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("hypercare_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch.add_column(sa.Column("hypercare_owner_email", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sop_versions") as batch:
        batch.drop_column("hypercare_owner_email")
        batch.drop_column("hypercare_until")
        batch.drop_column("hypercare_warn_factor")
        batch.drop_column("hypercare_days")
