"""inbox order index: the inbox's whole ORDER BY in one index

The inbox sorts by priority (descending), tasks with an SLA before those without, then the
nearest deadline, the oldest, the id. The old index stopped at `sla_due` and could not
serve `sla_due IS NULL`, so every first page sorted the whole queue (benchmark: inbox
scenario, docs/PERFORMANCE.md). This one serves the first page straight from the index
on SQLite and PostgreSQL.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INBOX_ORDER = [
    "queue",
    "status",
    sa.text("priority DESC"),
    sa.text("(sla_due IS NULL)"),
    "sla_due",
    "created_at",
    "id",
]


def upgrade() -> None:
    op.create_index("ix_task_inbox_order", "task_view", INBOX_ORDER)
    op.drop_index("ix_task_inbox", table_name="task_view")


def downgrade() -> None:
    op.create_index(
        "ix_task_inbox", "task_view", ["queue", "status", "priority", "sla_due", "created_at"]
    )
    op.drop_index("ix_task_inbox_order", table_name="task_view")
