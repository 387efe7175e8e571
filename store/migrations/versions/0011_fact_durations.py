"""fact_durations: each fact's durations as integer microseconds

First touch (opened -> first claim or acknowledgement), handle time (claim -> complete),
work time (the handle time less the pauses) and the cycle (opened -> completed), so a
report sorts integers instead of parsing two stored instants per fact. The facts written
before are backfilled from their instants and pauses with the rule the projection writes
them by (store/facts.durations).

Revision ID: 0011_fact_durations
Revises: 0010_hypercare
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from store.facts import DURATION_SOURCES, DURATIONS, durations

revision: str = "0011_fact_durations"
down_revision: str | None = "0010_hypercare"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5_000


def upgrade() -> None:
    with op.batch_alter_table("facts") as batch:
        for name in DURATIONS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
    _backfill()


def _backfill() -> None:
    instant = sqlmodel.sql.sqltypes.UTCDateTime()
    sources = [
        sa.column(name, sa.Float() if name == "paused_seconds" else instant)
        for name in DURATION_SOURCES
    ]
    facts = sa.table(
        "facts",
        sa.column("id", sa.String()),
        *sources,
        *(sa.column(name, sa.BigInteger()) for name in DURATIONS),
    )
    update = (
        facts.update()
        .where(facts.c.id == sa.bindparam("fact_id"))
        .values({name: sa.bindparam(name) for name in DURATIONS})
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(facts.c.id, *sources)).mappings().all()
    for start in range(0, len(rows), BATCH):
        batch = [{"fact_id": r["id"], **durations(r)} for r in rows[start : start + BATCH]]
        bind.execute(update, batch)


def downgrade() -> None:
    with op.batch_alter_table("facts") as batch:
        for name in reversed(list(DURATIONS)):
            batch.drop_column(name)
