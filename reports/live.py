"""The live numbers Prometheus scrapes: open work by queue and state, warnings, breaches."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from escalations.calendars import as_utc
from store.facts import TASK
from store.tables import FactRow, TaskRow


@dataclass
class LiveNumbers:
    open_tasks: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, status)
    in_warning: int = 0
    breaches_last_hour: int = 0
    oldest_open_age_seconds: float = 0.0


def live_numbers(engine: Engine, now: datetime) -> LiveNumbers:
    tasks, facts = TaskRow.__table__, FactRow.__table__
    live = tasks.c.status != "done"
    with engine.connect() as connection:
        by_queue = connection.execute(
            select(tasks.c.queue, tasks.c.status, func.count())
            .where(live)
            .group_by(tasks.c.queue, tasks.c.status)
        ).all()
        warning = connection.execute(
            select(func.count()).where(live, tasks.c.sla_state == "warning")
        ).scalar_one()
        breaches = connection.execute(
            select(func.count()).where(
                facts.c.kind == TASK, facts.c.breached_at >= now - timedelta(hours=1)
            )
        ).scalar_one()
        oldest = connection.execute(select(func.min(tasks.c.created_at)).where(live)).scalar()
    return LiveNumbers(
        open_tasks={(queue, status): count for queue, status, count in by_queue},
        in_warning=int(warning),
        breaches_last_hour=int(breaches),
        oldest_open_age_seconds=(now - as_utc(oldest)).total_seconds() if oldest else 0.0,
    )
