"""cross vendor: an agent works every vendor's cases only when made so explicitly

Vendor isolation fails closed: an agent without a vendor now sees nothing, unless the
`cross_vendor` flag (`casebook user add --cross-vendor`) says it works for all of them.
Existing users start without it.

Revision ID: 0006_cross_vendor
Revises: 0005_command_keys_user_tokens
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_cross_vendor"
down_revision: str | None = "0005_command_keys_user_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("cross_vendor", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("cross_vendor")
