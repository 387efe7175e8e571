"""What every scenario works with: the stack, its API, its Temporal server, the baseline."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, select
from temporalio.client import Client

from bench.baseline import Baseline
from bench.casebook_api import QUEUE, CasebookApi, Headers
from bench.sizes import Sizes
from bench.stack import Target
from store.tables import CaseRow, TaskRow


@dataclass
class Bench:
    target: Target
    api: CasebookApi
    temporal: Client
    baseline: Baseline
    sizes: Sizes
    agent: Headers  # serves disputes-tier1
    lead: Headers  # reads the escalation board
    worker_rss_idle_mib: float | None = None
    processes: dict[str, int] = field(default_factory=dict)  # for CPU accounting

    def open_tasks(self, queue: str = QUEUE) -> int:
        """Open tasks in `queue`, counted in the read model."""
        with Session(self.target.engine) as session:
            query = select(func.count()).where(TaskRow.queue == queue, TaskRow.status == "open")
            return session.exec(query).one()

    def open_cases(self) -> int:
        with Session(self.target.engine) as session:
            return session.exec(select(func.count()).where(CaseRow.status == "open")).one()
