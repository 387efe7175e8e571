"""command keys and user tokens: Idempotency-Keys of task commands and escalations with
their answers; token lifecycle on users (disabled, expiry, last use)

A key is bound to its user and its request (hash); the answer is kept so a retry after
success repeats it instead of being refused by the case's validators.

Revision ID: 0005_command_keys_user_tokens
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005_command_keys_user_tokens"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER_TOKEN_COLUMNS = ("disabled_at", "expires_at", "last_used_at")


def upgrade() -> None:
    op.create_table(
        "command_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("command", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("answered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.UniqueConstraint("user_id", "key"),
    )
    op.create_index("ix_command_keys_target_key", "command_keys", ["target", "key"])
    with op.batch_alter_table("users") as users:
        for column in USER_TOKEN_COLUMNS:
            users.add_column(sa.Column(column, sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as users:
        for column in USER_TOKEN_COLUMNS:
            users.drop_column(column)
    op.drop_index("ix_command_keys_target_key", table_name="command_keys")
    op.drop_table("command_keys")
